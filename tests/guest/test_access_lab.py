"""Access telemetry on the tiered boot (DAMON vaddr, the lab's 6.12 guest): the range a workload
reads over and over shows as hot and the range it left idle as cold within 15 s, in two mappings
and in one; the bytes per node match /proc/PID/numa_maps; a steady reader's hot bytes are on the
node its memory is on, though it takes no faults."""

from __future__ import annotations

import pytest

from llamas_ebpf.kernel import mempolicy
from llamas_ebpf.snapshot import ProcessAccess
from tests.guest.access import (
    PAGE,
    PAGES,
    SIZE,
    WITHIN_S,
    contender,
    described,
    resident_of,
    sensor_fixture,
    until,
)

__all__ = ["contender"]  # the fixture, imported for pytest to find
pytestmark = pytest.mark.usefixtures("contender")
sensor = sensor_fixture("tiered")


@pytest.mark.parametrize("layout", ["two-mappings", "one-mapping"])
def test_read_range_is_hot_and_idle_range_cold(sensor, spawn, layout):
    child = spawn("--cpunodebind=0", "--membind=0")
    if layout == "two-mappings":
        idle = child.touch("write", PAGES)
        hot = child.touch("write", PAGES)
        child.begin("spinlast 40")
    else:
        idle = child.touch("write", 2 * PAGES)
        hot = idle + SIZE
        child.begin("spinhalf 40")

    def seen(access: ProcessAccess) -> bool:
        return (resident_of(access, "hot", hot, hot + SIZE) >= 0.9 * SIZE
                and resident_of(access, "cold", idle, idle + SIZE) >= 0.9 * SIZE)

    snap, took = until(sensor, child.pid, seen)
    sample = snap.process(child.pid)
    assert sample is not None and sample.access is not None, described(snap, child.pid)
    print(f"{layout}: hot and cold within {took:.1f} s")
    assert seen(sample.access), described(snap, child.pid)
    assert took <= WITHIN_S + 1.0, f"took {took:.1f} s"
    assert snap.access is not None and snap.access.method == "damon-vaddr"


def test_bytes_per_node_match_numa_maps_and_a_steady_reader_is_hot_on_node1(sensor, spawn):
    """The steady-state misplaced reader: runs on node0, its memory on node1, no faults at all
    once its pages are in; llamas still says where its hot bytes are."""
    child = spawn("--cpunodebind=0", "--membind=1")
    hot = child.touch("write", PAGES)
    half = child.touch("write", PAGES)
    moved = [half + i * PAGE for i in range(0, PAGES, 2)]
    mempolicy.move_pages(child.pid, moved, [0] * len(moved))  # half of it on node0
    child.begin("spin 40")

    def seen(access: ProcessAccess) -> bool:
        return access.hot_bytes_by_node.get(1, 0) >= 0.9 * (SIZE + SIZE // 2)

    snap, took = until(sensor, child.pid, seen)
    print(f"steady reader: hot on node1 within {took:.1f} s")
    sample = snap.process(child.pid)
    assert sample is not None and sample.access is not None, described(snap, child.pid)
    assert sample.total_faults == 0 or sample.total_faults < 16  # steady state: it does not fault
    access = sample.access
    assert seen(access), described(snap, child.pid)
    # llamas's bytes per node, against numa_maps, over the two mappings
    kernel = mempolicy.pages_per_node(child.pid, ranges=[(hot, hot + SIZE), (half, half + SIZE)])
    ours: dict[int, int] = {}
    for region in access.regions:
        for node, size in region.bytes_by_node.items():
            for start in (hot, half):
                overlap = min(start + SIZE, region.end) - max(start, region.start)
                if overlap > 0:
                    ours[node] = ours.get(node, 0) + int(size * overlap / (region.end - region.start))
    for node in (0, 1):
        expected = kernel.get(node, 0) * PAGE
        assert abs(ours.get(node, 0) - expected) <= 0.05 * expected, (node, ours, kernel)
