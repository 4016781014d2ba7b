"""Write-slow memory on the pmem boot: node 2 reads about as fast as DRAM and writes five times
slower (devices/pmem.toml, and the guest's HMAT). A process on node 0's CPU writes one 64 MiB
range over and over and only reads another; both start on node 2. `llamas run` with the heuristic
(NUMA balancing off) must bring the written range to DRAM and leave none of it on node 2; the
read range may stay there (printed, not asserted: reading from pmem is what it is for)."""

from __future__ import annotations

import time

import pytest

from llamas_ebpf.kernel import mempolicy
from tests.guest.access import PAGE, PAGES, contender
from tests.guest.conftest import applied_rules, heuristic_daemon

WITHIN_S = 90.0

__all__ = ["contender"]  # the fixture, for pytest to find
pytestmark = pytest.mark.usefixtures("contender")


def _nodes(pid: int, start: int) -> list[int]:
    return mempolicy.move_pages(pid, [start + i * PAGE for i in range(PAGES)], None)


def test_a_written_range_comes_off_the_write_slow_node(topology, env, spawn, tmp_path):
    assert topology.name == "pmem"
    child = spawn("--cpunodebind=0")
    written = child.touch("write", PAGES)
    read = child.touch("write", PAGES)
    for start in (written, read):
        mempolicy.move_pages(child.pid, [start + i * PAGE for i in range(PAGES)], [2] * PAGES)
        assert _nodes(child.pid, start).count(2) >= 0.95 * PAGES
    child.begin("mix 900")  # writes `written`, reads `read`, over and over
    with heuristic_daemon(env, tmp_path) as said:
        started = time.monotonic()
        off = 0.0
        while time.monotonic() - started < WITHIN_S:
            off = _nodes(child.pid, written).count(0) / PAGES
            if off >= 0.95:
                break
            time.sleep(1)
        took = time.monotonic() - started
        time.sleep(10)  # and it stays off: nothing demotes it back
        written_on_pmem = _nodes(child.pid, written).count(2) / PAGES
        read_on_pmem = _nodes(child.pid, read).count(2) / PAGES
    rules = applied_rules(env, child.pid)
    print(f"written range: {off:.0%} in DRAM after {took:.1f} s, {written_on_pmem:.0%} on pmem 10 s later; "
          f"read range {read_on_pmem:.0%} on pmem; rules {rules}")
    assert rules, said[-5:]
    assert off >= 0.95 and written_on_pmem <= 0.05, (off, written_on_pmem, rules)
