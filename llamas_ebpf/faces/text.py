"""Text shared by the faces: untrusted names made safe for a terminal, numbers made short."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe(text: str, width: int | None = None) -> str:
    """A process name or LLM string as inert text: control characters (escape sequences that
    could move the cursor or retitle a terminal) become '?'."""
    cleaned = _CONTROL.sub("?", text)
    return cleaned[:width] if width else cleaned


def human(value: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(value) < 1000:
            return f"{value:.0f}{unit}" if unit == "" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.0f}P"


def mib(size: int | None) -> str:
    """Bytes as whole MiB, '-' where unknown."""
    return "-" if size is None else f"{size / (1 << 20):.0f}"
