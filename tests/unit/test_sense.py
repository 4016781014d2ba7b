"""Sensor logic that needs no BPF: how often a busy process's numa_maps is read again."""

from __future__ import annotations

import subprocess
import sys
import time

from llamas_ebpf import sense
from llamas_ebpf.kernel import procfs
from llamas_ebpf.probes.base import ProbeOptions


def _bare_sensor() -> sense.Sensor:
    sensor = sense.Sensor.__new__(sense.Sensor)  # no probes: _resident_pages reads /proc only
    sensor.options = ProbeOptions(bpf_dir=sense.Path("."))
    sensor.detail_top = 16
    sensor._resident = {}
    return sensor


def test_resident_pages_are_read_again_when_the_process_faults_or_is_asked_about():
    # a child that maps 64 MiB once it reads a line, so what numa_maps says can change under us
    code = ("import sys; sys.stdin.readline(); b = bytearray(64 << 20); print('ok', flush=True); "
            "sys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdin is not None and child.stdout is not None
        time.sleep(0.3)
        sensor = _bare_sensor()
        started = procfs.stat(child.pid).start_ticks
        first = sensor._resident_pages(child.pid, started, faults=0)
        assert first and sum(first.values()) < 16384  # the interpreter alone, well under 64 MiB
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ok"
        # no faults counted in the interval: the pages read a moment ago stand
        assert sensor._resident_pages(child.pid, started, faults=0) == first
        # faults past RESIDENT_CHURN of what it had: read again, and the 64 MiB are there
        grown = sensor._resident_pages(child.pid, started, faults=sum(first.values()))
        assert grown is not None and sum(grown.values()) >= sum(first.values()) + 16000
        # a pid taken by another process (another start time) is never given the old pages
        sensor._resident[child.pid] = (started + 1, time.monotonic(), {0: 1})
        assert sensor._resident_pages(child.pid, started, faults=0) == grown
        # an asked-about process is read every time
        sensor._resident[child.pid] = (started, time.monotonic(), {0: 1})
        sensor.detail_pids = {child.pid}
        assert sensor._resident_pages(child.pid, started, faults=0) == grown
        # and, once old enough, any process is
        sensor.detail_pids = set()
        sensor._resident[child.pid] = (started, time.monotonic() - sense.RESIDENT_REFRESH_S, {0: 1})
        assert sensor._resident_pages(child.pid, started, faults=0) == grown
    finally:
        child.kill()
        child.wait()
    # gone: its stat cannot be read (no start time), so nothing, and forgotten
    assert sensor._resident_pages(child.pid, None, faults=0) is None
    assert child.pid not in sensor._resident


def test_a_snapshot_keeps_the_busiest_by_each_measure_and_sums_the_rest():
    """keep_top 2: the two busiest by faults, by pages allocated, by remote allocations, by
    remote hinting faults and by CPU moves, and the asked-about one, get samples with every
    count they have; the others' counts are summed, so totals over Snapshot.counted are totals
    over everyone."""
    from llamas_ebpf.probes.base import MAX_NODES, SnapshotBuilder

    def allocs(local: int, remote: int) -> tuple[int, ...]:
        return (local, remote, local, remote, *([0] * (MAX_NODES - 2)))

    out = SnapshotBuilder(keep_top=2, keep={30})
    out.faults.update({pid: (pid, 1, pid, 1) for pid in range(10, 40)})  # 39 and 38 fault most
    out.allocs.update({pid: allocs(pid - 10, 0) for pid in range(10, 40)})  # 39, then 38, allocate most
    out.allocs[11] = allocs(1, 500)  # the most pages, and the most remote: kept, though it faults little
    out.hints[12] = (0, 7, 1)
    out.moves.update({13: (3, 9), 14: (1, 0), 39: (0, 2)})  # 14 moved least
    faults_of = {pid: c[0] + c[1] for pid, c in out.faults.items()}
    local_of = {pid: c[0] for pid, c in out.allocs.items()}
    out.settle()
    out.process(15).gpu.calls["cuLaunchKernel"] = 1  # a probe after the choice asks for one more
    others = out.finish()

    kept = {39, 38, 11, 12, 13, 30, 15}
    assert set(out.processes) == kept
    assert out.processes[11].numa.alloc_remote == 500 and out.processes[11].faults.user == 11
    assert out.processes[11].numa.alloc_pages_by_node == {0: 1, 1: 500}
    assert out.processes[12].numa.hint_remote == 7 and out.processes[13].cpu_migrations.cross_node == 9
    assert out.processes[39].cpu_migrations.cross_node == 2 and out.processes[15].faults.user == 15
    assert others is not None and others.processes == 30 - len(kept)
    assert others.total_faults == sum(f for pid, f in faults_of.items() if pid not in kept)
    assert others.total_faults + sum(p.total_faults for p in out.processes.values()) == sum(faults_of.values())
    assert others.numa.alloc_local == sum(n for pid, n in local_of.items() if pid not in kept)
    assert others.numa.alloc_remote == 0
    assert others.numa.alloc_pages_by_node == {0: others.numa.alloc_local}
    assert others.cpu_migrations.same_node == 1 and others.cpu_migrations.cross_node == 0
    assert others.numa.hint_local is None  # no hinting faults among them: not split, not zero


def test_keep_top_none_keeps_every_process():
    from llamas_ebpf.probes.base import SnapshotBuilder

    out = SnapshotBuilder(keep_top=None)
    out.faults.update({pid: (1, 0, 1, 0) for pid in range(100)})
    out.moves[500] = (1, 1)  # moved, never faulted
    assert out.finish() is None
    assert len(out.processes) == 101 and out.processes[500].cpu_migrations.cross_node == 1
