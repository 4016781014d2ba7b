"""Crash points, for the crash tests (tests/host/test_crash.py): with LLAMAS_FAILPOINT=NAME set,
the process kills itself with SIGKILL, as `kill -9` would, the first time it passes the point
NAME (NAME:N, the N-th time). The named points are the instants at which a crash leaves the
most to recover: between writing a map slot and switching to it, between switching and saving
policy.json, while threads are pinned or restored, while pages move. Unset, as everywhere but
in those tests, a point costs one comparison."""

from __future__ import annotations

import os
import signal

_NAME, _, _NTH = os.environ.get("LLAMAS_FAILPOINT", "").partition(":")
_left = int(_NTH) if _NTH.isdigit() else 1


def failpoint(name: str) -> None:
    global _left
    if name != _NAME or not _NAME:
        return
    _left -= 1
    if _left == 0:
        os.kill(os.getpid(), signal.SIGKILL)
