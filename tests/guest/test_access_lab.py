"""Access telemetry on a kernel with DAMON vaddr and soft-dirty (the lab's 6.12 guest).

What the user would check: the range a workload reads over and over shows as hot, the range it
left idle as cold, the bytes per node match /proc/PID/numa_maps, and on the pmem boot the range
written in a loop shows as written and the range only read does not.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from llamas_ebpf.kernel import mempolicy
from llamas_ebpf.sense import Sensor
from llamas_ebpf.snapshot import ProcessAccess, Snapshot
from tests.guest.conftest import set_numa_balancing

PAGE = 4096
PAGES = 16384  # 64 MiB
SIZE = PAGES * PAGE
WITHIN_S = 15.0


@pytest.fixture(scope="module")
def sensor(topology):
    assert topology.name in ("tiered", "pmem"), "tests/lab runs this file on the tiered and pmem boots"
    set_numa_balancing(0)  # nothing but DAMON tells access here
    with Sensor(only={"access"}, access_targets=4) as s:
        assert s.health["access"].method == "damon-vaddr", s.health["access"]
        yield s


@pytest.fixture(autouse=True)
def contender():
    """A second process busy on node0's CPU, as a real host has. Under TCG the emulator's TLB
    holds a whole 64 MiB working set, so a process alone on its CPU never walks its page tables
    again and the accessed bits DAMON clears are never set (real TLBs hold a few MiB); a context
    switch to another address space flushes that TLB, as it would a hardware one."""
    busy = subprocess.Popen(["numactl", "--cpunodebind=0", "sh", "-c", "while :; do :; done"])
    yield
    busy.kill()
    busy.wait()


def _bytes(access: ProcessAccess, heat: str, start: int, end: int) -> int:
    """Resident bytes of `heat` regions inside [start, end), each region's share by overlap."""
    total = 0.0
    for region in access.regions:
        if region.heat != heat:
            continue
        overlap = min(end, region.end) - max(start, region.start)
        if overlap > 0:
            total += sum(region.bytes_by_node.values()) * overlap / (region.end - region.start)
    return int(total)


def _until(sensor: Sensor, pid: int, done, seconds: float = WITHIN_S) -> tuple[Snapshot, float]:
    """Snapshots every second until `done(access)` holds; the last and when (s after start)."""
    started = time.monotonic()
    sensor.detail_pids = {pid}
    snap = sensor.collect()
    while time.monotonic() - started < seconds:
        time.sleep(0.5)
        snap = sensor.collect()
        sample = snap.process(pid)
        if sample is not None and sample.access is not None and done(sample.access):
            return snap, time.monotonic() - started
    return snap, time.monotonic() - started


def _described(snap: Snapshot, pid: int) -> str:
    sample = snap.process(pid)
    access = sample.access if sample is not None else None
    if access is None:
        return f"no access section for {pid}: {snap.access}"
    rows = [f"{r.start:#x}-{r.end:#x} {r.heat} acc={r.accesses} age={r.age_s}s {r.bytes_by_node}"
            for r in access.regions]
    return f"{snap.access}\n" + "\n".join(rows)


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
        return (_bytes(access, "hot", hot, hot + SIZE) >= 0.9 * SIZE
                and _bytes(access, "cold", idle, idle + SIZE) >= 0.9 * SIZE)

    snap, took = _until(sensor, child.pid, seen)
    sample = snap.process(child.pid)
    assert sample is not None and sample.access is not None, _described(snap, child.pid)
    print(f"{layout}: hot and cold within {took:.1f} s")
    assert seen(sample.access), _described(snap, child.pid)
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

    snap, took = _until(sensor, child.pid, seen)
    print(f"steady reader: hot on node1 within {took:.1f} s")
    sample = snap.process(child.pid)
    assert sample is not None and sample.access is not None, _described(snap, child.pid)
    assert sample.total_faults == 0 or sample.total_faults < 16  # steady state: it does not fault
    access = sample.access
    assert seen(access), _described(snap, child.pid)
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


def test_written_range_and_read_range(sensor, spawn, topology):
    if topology.name != "pmem":
        pytest.skip("the written-fraction check runs on the pmem boot (tests/lab/test_lab.py)")
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

    snap, took = _until(sensor, child.pid, seen, seconds=25.0)
    print(f"written fractions within {took:.1f} s: {fractions(snap.process(child.pid).access)}")
    sample = snap.process(child.pid)
    assert sample is not None and sample.access is not None, _described(snap, child.pid)
    assert snap.access is not None and snap.access.written_method == "soft-dirty"
    assert seen(sample.access), (fractions(sample.access), _described(snap, child.pid))
