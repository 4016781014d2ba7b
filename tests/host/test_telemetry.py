"""Real BPF on this kernel: counts against the kernel's own counters."""

from __future__ import annotations

import os
import time

import pytest

from llamas_ebpf.kernel import nodes, procfs
from llamas_ebpf.sense import Sensor

PAGES = 20000


@pytest.fixture(scope="module")
def sensor():
    with Sensor(only={"faults", "numa_alloc", "cpu_migrate", "page_migrate"}, bpf_stats=True) as s:
        yield s


def _bracket(sensor, toucher, mode, pages):
    """Counts and the kernel's minflt for exactly one touch command of the child."""
    sensor.collect()
    before = procfs.stat(toucher.pid)
    node_before = nodes.numastat(0)
    toucher.touch(mode, pages)
    after = procfs.stat(toucher.pid)
    node_after = nodes.numastat(0)
    snap = sensor.collect()
    sample = snap.process(toucher.pid)
    assert sample is not None, f"pid {toucher.pid} missing from the snapshot"
    minflt = (after.minflt + after.majflt) - (before.minflt + before.majflt)
    numastat_local = node_after["local_node"] - node_before["local_node"]
    return sample, minflt, numastat_local, snap


def test_user_faults_match_minflt(sensor, toucher):
    sample, minflt, _, _ = _bracket(sensor, toucher, "write", PAGES)
    assert minflt >= PAGES
    assert abs(sample.faults.user - minflt) <= 0.02 * minflt, (sample.faults, minflt)
    assert sample.comm == "toucher"


def test_a_storm_is_counted_by_sample_and_says_so(sensor, toucher):
    """100,000 faults as fast as one thread takes them: far past the exact rate on its CPU, so
    the counts are estimates, and the snapshot says so; they still agree with the kernel's."""
    sample, minflt, _, snap = _bracket(sensor, toucher, "write", 5 * PAGES)
    faults, allocs = snap.probes["faults"], snap.probes["numa_alloc"]
    assert faults.sample_every == 16 and allocs.sample_every == 16
    assert faults.estimated > 0.5 * minflt and allocs.estimated > 0.5 * minflt, (faults, allocs)
    assert abs(sample.faults.user - minflt) <= 0.02 * minflt, (sample.faults, minflt)
    assert abs(sample.numa.alloc_local - 5 * PAGES) <= 0.03 * 5 * PAGES, sample.numa


def test_a_slow_process_is_counted_one_by_one(sensor, toucher):
    """One fault every 200 us or more is below the rate the probes sample at: every fault of
    the process counts, none is estimated (a fault of another process on that CPU in the same
    jiffy can tip it over, hence 0.5% and not equality)."""
    toucher.touch("write", 1)  # the child has started: its start-up faults are done
    sample, minflt, _, snap = _bracket(sensor, toucher, "pacedwrite", 2000)
    assert minflt >= 2000
    assert abs(sample.faults.user - minflt) <= max(2, 0.005 * minflt), (sample.faults, minflt)
    assert snap.probes["faults"].estimated < 0.05 * minflt, snap.probes["faults"]


def test_write_touch_is_write_faults(sensor, toucher):
    sample, _, _, _ = _bracket(sensor, toucher, "write", PAGES)
    assert sample.faults.write >= 0.98 * PAGES
    assert sample.faults.read < 0.02 * PAGES


def test_read_touch_is_read_faults(sensor, toucher):
    sample, _, _, _ = _bracket(sensor, toucher, "read", PAGES)
    assert sample.faults.read >= 0.98 * PAGES
    assert sample.faults.write < 0.02 * PAGES


def test_allocations_are_local_on_one_node(sensor, toucher):
    assert nodes.node_ids() == [0], "this check is for a one-node host"
    sample, _, numastat_local, snap = _bracket(sensor, toucher, "write", PAGES)
    assert sample.numa.alloc_remote == 0
    # a written fresh anonymous page is one order-0 allocation (plus page tables)
    assert PAGES <= sample.numa.alloc_local <= PAGES * 1.05 + 200, sample.numa
    assert sample.numa.alloc_pages_by_node == {0: sample.numa.alloc_local}
    # numastat counts every allocation on the host in the window, ours among them
    assert numastat_local >= sample.numa.alloc_local * 0.98
    # the node matrix is read just after the per-process map: an allocation between the two
    # reads lands in neighbouring intervals, hence the small allowance
    assert snap.nodes[0].alloc_pages >= sample.numa.alloc_local * 0.99
    assert snap.probes["numa_alloc"].drops == 0


def test_cpu_migrations_at_least_moves(sensor):
    child = os.fork()
    if child == 0:
        while True:  # spin so every affinity change is a real move
            pass
    try:
        sensor.collect()
        moves = 0
        for i in range(40):
            os.sched_setaffinity(child, {i % 2})
            moves += 1
            time.sleep(0.01)
        snap = sensor.collect()
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
    sample = snap.process(child)
    assert sample is not None
    counted = sample.cpu_migrations.same_node + sample.cpu_migrations.cross_node
    assert counted >= moves - 1, (counted, moves)  # the first setaffinity may find it on that CPU
    assert sample.cpu_migrations.cross_node == 0  # one node


def test_probe_health_is_reported(sensor):
    snap = sensor.collect()
    faults = snap.probes["faults"]
    assert faults.status == "ok" and faults.method == "raw_tracepoint"
    assert faults.events is not None and faults.run_time_ns is not None
    # the page's node from page->flags: the counts above were checked against numastat with it
    assert snap.probes["numa_alloc"].method == "raw_tracepoint", snap.probes["numa_alloc"]
    assert all(p.map_full == 0 and p.drops == 0 for p in snap.probes.values())


def _run_delay_ns(pid: int) -> int:
    """The kernel's own run-queue wait of a (single-threaded) process: /proc/PID/schedstat."""
    return int(open(f"/proc/{pid}/schedstat").read().split()[1])


def test_cpu_delay_matches_schedstat(toucher_binary):
    from tests.helpers.children import Toucher

    with Sensor(only={"faults", "taskstats"}) as sensor:
        # two children on one CPU: while both fault, each waits for the other
        children = [Toucher(toucher_binary, ("taskset", "-c", "0")) for _ in range(2)]
        try:
            for child in children:
                child.touch("write", 10)
            sensor.collect()  # taskstats' first sight of them: totals so far, no interval yet
            before = [_run_delay_ns(c.pid) for c in children]
            for child in children:
                child.proc.stdin.write("write 60000\n")
                child.proc.stdin.flush()
            for child in children:
                assert child.proc.stdout.readline().startswith("done")
            after = [_run_delay_ns(c.pid) for c in children]
            snap = sensor.collect()
        finally:
            for child in children:
                child.close()
    assert snap.probes["taskstats"].status == "ok"
    waited = 0
    for child, start, end in zip(children, before, after, strict=True):
        sample = snap.process(child.pid)
        assert sample is not None and sample.delays is not None, child.pid
        kernel = end - start
        assert abs(sample.delays.cpu_ns - kernel) <= 0.02 * kernel + 1_000_000, (sample.delays, kernel)
        waited += kernel
    assert waited > 10_000_000, "the children should have waited for the CPU"
