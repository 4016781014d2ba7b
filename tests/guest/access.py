"""What the access checks of the lab share (test_access_lab.py on the tiered boot,
test_written_lab.py on the pmem boot): the sensor, a contender for the CPU, and the polling."""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest

from llamas_ebpf.sense import Sensor
from llamas_ebpf.snapshot import ProcessAccess, Snapshot
from tests.guest.conftest import set_numa_balancing

PAGE = 4096
PAGES = 16384  # 64 MiB
SIZE = PAGES * PAGE
WITHIN_S = 15.0


@contextlib.contextmanager
def access_sensor():
    set_numa_balancing(0)  # nothing but DAMON tells access here
    with Sensor(only={"access"}, access_targets=4) as s:
        assert s.health["access"].method == "damon-vaddr", s.health["access"]
        yield s


def sensor_fixture(boot: str):
    """The module's sensor, on the boot tests/lab/test_lab.py runs the module on."""

    @pytest.fixture(scope="module")
    def sensor(topology):
        assert topology.name == boot, f"tests/lab runs this file on the {boot} boot"
        with access_sensor() as s:
            yield s

    return sensor


@pytest.fixture
def contender():
    """A second process busy on node0's CPU, as a real host has. Under TCG the emulator's TLB
    holds a whole 64 MiB working set, so a process alone on its CPU never walks its page tables
    again and the accessed bits DAMON clears are never set (real TLBs hold a few MiB); a context
    switch to another address space flushes that TLB, as it would a hardware one."""
    busy = subprocess.Popen(["numactl", "--cpunodebind=0", "sh", "-c", "while :; do :; done"])
    yield
    busy.kill()
    busy.wait()


def resident_of(access: ProcessAccess, heat: str, start: int, end: int) -> int:
    """Resident bytes of `heat` regions inside [start, end), each region's share by overlap."""
    total = 0.0
    for region in access.regions:
        if region.heat != heat:
            continue
        overlap = min(end, region.end) - max(start, region.start)
        if overlap > 0:
            total += sum(region.bytes_by_node.values()) * overlap / (region.end - region.start)
    return int(total)


def until(sensor: Sensor, pid: int, done, seconds: float = WITHIN_S) -> tuple[Snapshot, float]:
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


def described(snap: Snapshot, pid: int) -> str:
    sample = snap.process(pid)
    access = sample.access if sample is not None else None
    if access is None:
        return f"no access section for {pid}: {snap.access}"
    rows = [f"{r.start:#x}-{r.end:#x} {r.heat} acc={r.accesses} age={r.age_s}s {r.bytes_by_node}"
            for r in access.regions]
    return f"{snap.access}\n" + "\n".join(rows)


