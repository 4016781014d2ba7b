"""The kernel's CPU/node list syntax ("0-3,8,10-11")."""

from __future__ import annotations


def parse(text: str) -> list[int]:
    """Parse a kernel list; raises ValueError on anything else."""
    result: list[int] = []
    text = text.strip()
    if not text:
        return result
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo_text, hi_text = part.split("-", 1)
            lo, hi = int(lo_text), int(hi_text)
            if lo < 0 or hi < lo:
                raise ValueError(f"bad range {part!r}")
            result.extend(range(lo, hi + 1))
        else:
            value = int(part)
            if value < 0:
                raise ValueError(f"negative id {part!r}")
            result.append(value)
    return sorted(set(result))


def format(ids: list[int] | set[int]) -> str:
    """The inverse of parse: sorted, with runs folded ("0-3,8")."""
    ordered = sorted(set(ids))
    runs: list[str] = []
    start: int | None = None
    prev = 0
    for value in ordered:
        if start is None:
            start = prev = value
        elif value == prev + 1:
            prev = value
        else:
            runs.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = value
    if start is not None:
        runs.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(runs)
