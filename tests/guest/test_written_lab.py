"""Written pages on the pmem boot (soft-dirty, the lab's 6.12 guest): a range written in a loop
shows a written fraction of at least 0.9, a range only read at most 0.1."""

from __future__ import annotations

import pytest

from llamas_ebpf.snapshot import ProcessAccess
from tests.guest.access import PAGES, SIZE, contender, described, sensor_fixture, until

__all__ = ["contender"]  # the fixture, imported for pytest to find
pytestmark = pytest.mark.usefixtures("contender")
sensor = sensor_fixture("pmem")


def test_written_range_and_read_range(sensor, spawn):
    child = spawn("--cpunodebind=0", "--membind=0")
    written = child.touch("write", PAGES)
    read = child.touch("write", PAGES)  # written once, before the window: then only read
    child.begin("mix 40")

    def fractions(access: ProcessAccess) -> tuple[float | None, float | None]:
        def of(start: int) -> float | None:
            parts = [(r.written_fraction, min(start + SIZE, r.end) - max(start, r.start))
                     for r in access.regions if r.written_fraction is not None]
            parts = [(f, o) for f, o in parts if o > 0]
            total = sum(o for _f, o in parts)
            return sum(f * o for f, o in parts) / total if total >= 0.9 * SIZE else None
        return of(written), of(read)

    def seen(access: ProcessAccess) -> bool:
        w, r = fractions(access)
        return w is not None and r is not None and w >= 0.9 and r <= 0.1

    snap, took = until(sensor, child.pid, seen, seconds=25.0)
    print(f"written fractions within {took:.1f} s: {fractions(snap.process(child.pid).access)}")
    sample = snap.process(child.pid)
    assert sample is not None and sample.access is not None, described(snap, child.pid)
    assert snap.access is not None and snap.access.written_method == "soft-dirty"
    assert seen(sample.access), (fractions(sample.access), described(snap, child.pid))
