"""Write-slow memory on the pmem boot: node 2 reads about as fast as DRAM and writes five times
slower (devices/pmem.toml, and the guest's HMAT). A process on node 0's CPU writes one 64 MiB
range over and over and only reads another; both start on node 2, and node 0 has room for one
of them (a locked balloon holds the rest of its DRAM). `llamas run` with the heuristic (NUMA
balancing off) must bring the written range to DRAM, ahead of the read range, and leave none of
it on node 2; the read range may stay there (printed, not asserted: reading from pmem is what it
is for). benchmarks/write_slow_lab.py measures the same against the kernel's modes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llamas_ebpf.kernel import mempolicy
from tests.guest.access import PAGE, PAGES, contender
from tests.guest.conftest import applied_rules, heuristic_daemon
from tests.helpers.balloon import NAME as BALLOON
from tests.helpers.balloon import Balloon

WITHIN_S = 90.0
FREE_MIB = 96

__all__ = ["contender"]  # the fixture, for pytest to find
pytestmark = pytest.mark.usefixtures("contender")


def _nodes(pid: int, start: int) -> list[int]:
    return mempolicy.move_pages(pid, [start + i * PAGE for i in range(PAGES)], None)


def test_a_written_range_comes_off_the_write_slow_node(topology, env, spawn, tmp_path):
    assert topology.name == "pmem"
    # llamas lives on node 1; once it is up (its per-CPU maps take some of node 0), node 0 keeps
    # room for one range and half the other; then the process starts, which llamas cannot judge
    # before MIN_RULE_AGE_S
    with heuristic_daemon(env, tmp_path, deny_comm=(BALLOON,),
                          prefix=("numactl", "--cpunodebind=1", "--membind=1")) as said, Balloon(FREE_MIB):
        child = spawn("--cpunodebind=0")
        written = child.touch("write", PAGES)
        read = child.touch("write", PAGES)
        for start in (written, read):
            mempolicy.move_pages(child.pid, [start + i * PAGE for i in range(PAGES)], [2] * PAGES)
            assert _nodes(child.pid, start).count(2) >= 0.95 * PAGES
        child.begin("mix 900")  # writes `written`, reads `read`, over and over
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
    # the audit log says why: a judgement that measured the written 64 MiB and sent it home
    log = [json.loads(line) for line in (Path(env["LLAMAS_STATE_DIR"]) / "audit.jsonl").read_text().splitlines()]
    judged = [e for e in log if e["event"] == "judged" and e["pid"] == child.pid]
    assert any(e["writes"] == "measured" and e["written_mib"] >= 60 and e["bound_mib"].get("0", 0) >= 60
               for e in judged), judged
