"""Access telemetry on this kernel (6.18, DAMON paddr only; a kdamond that is not llamas's runs
here): hot, warm and cold bytes per node, or the reason there are none, never a silent zero."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from llamas_ebpf.kernel import damon
from llamas_ebpf.sense import Sensor
from tests.host.conftest import llamas


def _monitored_bytes(found: damon.Survey) -> int | None:
    """What the kernel says the paddr kdamond covers: its target's regions where sysfs lists
    them, else the largest System RAM range of /proc/iomem (DAMON paddr's default)."""
    for k in found.running:
        if k.operations == ("paddr",):
            regions = damon.ADMIN / "kdamonds" / str(k.index) / "contexts/0/targets/0/regions"
            count = int((regions / "nr_regions").read_text()) if (regions / "nr_regions").exists() else 0
            if count:
                return sum(int((regions / str(i) / "end").read_text()) - int((regions / str(i) / "start").read_text())
                           for i in range(count))
    ranges = [(int(a, 16), int(b, 16)) for a, b in
              re.findall(r"^([0-9a-f]+)-([0-9a-f]+) : System RAM$", Path("/proc/iomem").read_text(), re.M)]
    return max((b + 1 - a for a, b in ranges), default=None)


def test_host_wide_heat_per_node_or_the_reason():
    with Sensor(only={"access"}) as sensor:
        health = sensor.health["access"]
        first = sensor.collect()
        assert first.access is not None
        if health.method is None:  # no DAMON the probe can use: said, with why, and no figures
            assert health.reason and first.access.reason, health
            assert all(n.hot_bytes is None for n in first.nodes)
            return
        assert health.method in ("damon-paddr", "damon-paddr-passive", "damon-vaddr"), health
        if all(n.hot_bytes is None for n in first.nodes):  # before the first aggregation
            assert "no aggregation reported yet" in first.access.reason, first.access
        aggr_s = (first.access.aggr_us or 1_000_000) / 1e6
        deadline = time.monotonic() + 2 * aggr_s + 5
        snap = first
        while time.monotonic() < deadline and all(n.hot_bytes is None for n in snap.nodes):
            time.sleep(1)
            snap = sensor.collect()
    assert snap.access is not None
    assert any(n.hot_bytes is not None for n in snap.nodes), snap.access
    total = sum((n.hot_bytes or 0) + (n.warm_bytes or 0) + (n.cold_bytes or 0) for n in snap.nodes)
    if health.method != "damon-vaddr":
        assert snap.access.scope.startswith("host-wide")
        expected = _monitored_bytes(damon.survey())
        assert expected is not None
        # every byte DAMON monitors is hot, warm or cold: the regions cover the range
        assert abs(total - expected) <= 0.02 * expected, (total, expected)
    assert snap.access.hot_min_accesses is not None and snap.access.cold_min_age_s is not None


def test_observe_json_and_doctor_say_how_access_is_seen():
    result = llamas("observe", "--json", "1", "2")
    assert result.returncode == 0, result.stderr
    snaps = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert snaps and all(s["access"] is not None and s["access"]["method"] for s in snaps), result.stdout[:500]
    doctor = llamas("doctor")
    assert doctor.returncode == 0, doctor.stderr
    line = next(line for line in doctor.stdout.splitlines() if line.startswith("access"))
    assert snaps[-1]["access"]["method"] in line


def test_pagemap_tells_the_pages_another_process_maps_too(tmp_path):
    """What a move leaves where it is by design (migrate_pages and move_pages without
    MPOL_MF_MOVE_ALL): a file mapped by a second process is shared, anonymous memory of this
    process alone is not, by this kernel's pagemap (bit 56)."""
    import ctypes
    import mmap
    import subprocess
    import sys

    from llamas_ebpf.kernel.pagemap import PAGE_SIZE, shared_pages

    pages = 8
    data = tmp_path / "data"
    data.write_bytes(b"x" * pages * PAGE_SIZE)
    holder = subprocess.Popen([sys.executable, "-c",
                               "import mmap, sys\n"
                               f"f = open({str(data)!r}, 'r+b')\nm = mmap.mmap(f.fileno(), 0)\n"
                               f"_ = sum(m[i] for i in range(0, len(m), {PAGE_SIZE}))\n"
                               "print('mapped', flush=True)\nsys.stdin.read()\n"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "mapped"
        with open(data, "r+b") as f:
            both = mmap.mmap(f.fileno(), 0)
        mine = mmap.mmap(-1, pages * PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for area in (both, mine):
            for i in range(pages):
                area[i * PAGE_SIZE] = area[i * PAGE_SIZE]  # present, each page
        views = [(ctypes.c_char * (pages * PAGE_SIZE)).from_buffer(area) for area in (both, mine)]
        both_at, mine_at = (ctypes.addressof(v) for v in views)
        del views
        assert shared_pages(os.getpid(), [(both_at, pages)]) == pages
        assert shared_pages(os.getpid(), [(mine_at, pages)]) == 0
        both.close()
        mine.close()
    finally:
        holder.kill()
        holder.wait()


def test_whole_process_move_finds_pages_already_home_and_a_process_gone(tmp_path):
    """On this one-node host every resident page of a process is on node 0 already: a home move
    to node 0 finds them all there (as many as numa_maps counts), journals nothing and makes no
    call; once the process has exited, the same move says it is gone and changes nothing."""
    import subprocess
    import sys

    from llamas_ebpf.actuator.pages import PageJournal, PageMover, TokenBucket
    from llamas_ebpf.kernel import mempolicy

    child = subprocess.Popen([sys.executable, "-c", "import sys\nx = bytearray(b'x' * (8 << 20))\n"
                              "print('ready', flush=True)\nsys.stdin.read()\n"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        mover = PageMover(TokenBucket(1e9), PageJournal(tmp_path / "pages.jsonl"))
        resident = mempolicy.pages_per_node(child.pid)
        result = mover.move_process(child.pid, 0, TokenBucket(1e9))
        assert result is not None and not result.gone
        assert result.moved == 0 and result.asked == result.already
        assert abs(result.already - resident.get(0, 0)) <= 0.05 * resident.get(0, 0), (result, resident)
        assert result.already >= (8 << 20) // 4096
        assert mover.whole_calls == 0 and not (tmp_path / "pages.jsonl").exists()
    finally:
        child.kill()
        child.wait()
    gone = mover.move_process(child.pid, 0, TokenBucket(1e9))
    assert gone is not None and gone.gone and gone.asked == 0 and mover.whole_calls == 0
