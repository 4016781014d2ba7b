"""Tracepoint facts read from tracefs: which events exist, their fields, their symbolic values."""

from __future__ import annotations

import re
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")

_SYMBOLIC = re.compile(r"__print_symbolic\(REC->(?P<field>\w+),(?P<body>(?:\s*\{[^}]*\},?)+)\)")
_PAIR = re.compile(r"\{\s*(?P<code>-?\d+)\s*,\s*\"(?P<name>[^\"]*)\"\s*\}")


def event_dir(category: str, event: str, root: Path = TRACEFS) -> Path:
    return root / "events" / category / event


def list_events(category: str, root: Path = TRACEFS) -> list[str]:
    base = root / "events" / category
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "format").exists())


def symbolic_values(category: str, event: str, field: str, root: Path = TRACEFS) -> dict[int, str]:
    """The code -> name table of `__print_symbolic(REC->field, ...)` in the event's print fmt."""
    return parse_symbolic((event_dir(category, event, root) / "format").read_text(), field)


def parse_symbolic(format_text: str, field: str) -> dict[int, str]:
    for match in _SYMBOLIC.finditer(format_text):
        if match.group("field") == field:
            return {int(p.group("code")): p.group("name") for p in _PAIR.finditer(match.group("body"))}
    return {}
