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
    assert all(p.map_full == 0 and p.drops == 0 for p in snap.probes.values())
