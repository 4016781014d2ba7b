"""The kernel's CPU/node list syntax ("0-3,8,10-11")."""

from __future__ import annotations

import re

_ID = re.compile(r"[0-9]{1,9}")  # ASCII digits only: int() would take "0_1" and other scripts' digits too


def _id(text: str, part: str) -> int:
    if not _ID.fullmatch(text):
        raise ValueError(f"bad id {part!r}")
    return int(text)


def parse(text: str, limit: int | None = None) -> list[int]:
    """Parse a kernel list; raises ValueError on anything else. With `limit`, every id must be
    below it, checked before a range is expanded (so "0-99999999" costs nothing)."""
    result: list[int] = []
    text = text.strip()
    if not text:
        return result
    for part in text.split(","):
        part = part.strip()
        lo_text, dash, hi_text = part.partition("-")
        lo = _id(lo_text.strip(), part)
        hi = _id(hi_text.strip(), part) if dash else lo
        if hi < lo:
            raise ValueError(f"bad range {part!r}")
        if limit is not None and hi >= limit:
            raise ValueError(f"{part!r} goes past CPU {limit - 1}")
        result.extend(range(lo, hi + 1))
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
