"""Test tiers: tests/unit (fixtures), tests/host (real BPF as root), tests/lab (QEMU guest).

A tier whose capability is missing here is skipped with the reason, except under CI=true, where
a missing capability fails the run instead: CI must run all three tiers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIERS = ("unit", "host", "lab")
# tests/guest runs inside the lab guest (scripts/lab sets LLAMAS_LAB=1), driven by tests/lab
collect_ignore = [] if os.environ.get("LLAMAS_LAB") else ["guest"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


def require(condition: bool, reason: str) -> None:
    """Skip where this machine lacks a capability; in CI, fail instead."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI requires this capability: {reason}", pytrace=False)
    pytest.skip(reason)
