"""The access probe's parts without a kernel: DAMON's sysfs driver against fixture trees, folding
damon_aggregated counts into regions, merging, heat, and the pagemap parser."""

from __future__ import annotations

import itertools
import os
import struct
from pathlib import Path

import pytest

from llamas_ebpf import metrics
from llamas_ebpf.kernel import damon, pagemap
from llamas_ebpf.kernel.nodes import PfnRange
from llamas_ebpf.probes.access import (
    RETARGET_S,
    AccessProbe,
    Folded,
    Quiet,
    Seen,
    fold,
    merge,
    physical_by_node,
    quiet,
    quiet_age,
    totals,
)
from llamas_ebpf.probes.base import ProbeOptions, SnapshotBuilder
from llamas_ebpf.snapshot import AccessRegion


def _tree(root: Path, kdamonds: list[dict[str, str]], ops: str = "vaddr fvaddr paddr",
          goal: bool = False) -> Path:
    """A DAMON admin tree: one directory per kdamond, with a state, a pid and one context."""
    admin = root / "admin"
    (admin / "kdamonds").mkdir(parents=True)
    (admin / "kdamonds/nr_kdamonds").write_text(f"{len(kdamonds)}\n")
    for index, k in enumerate(kdamonds):
        _kdamond(admin, index, k.get("state", "off"), k.get("pid", "-1"), k.get("operations", "vaddr"), ops, goal)
    return admin


def _kdamond(admin: Path, index: int, state: str, pid: str, operations: str, ops: str, goal: bool) -> None:
    base = admin / "kdamonds" / str(index)
    ctx = base / "contexts/0"
    for d in ("monitoring_attrs/intervals", "monitoring_attrs/nr_regions", "targets"):
        (ctx / d).mkdir(parents=True, exist_ok=True)
    if goal:
        (ctx / "monitoring_attrs/intervals/intervals_goal").mkdir(exist_ok=True)
    (base / "state").write_text(state + "\n")
    (base / "pid").write_text(pid + "\n")
    (base / "contexts/nr_contexts").write_text("1\n")
    (ctx / "operations").write_text(operations + "\n")
    (ctx / "avail_operations").write_text(ops + "\n")
    for name, value in (("sample_us", "5000"), ("aggr_us", "100000"), ("update_us", "60000000")):
        (ctx / "monitoring_attrs/intervals" / name).write_text(value + "\n")
    (ctx / "targets/nr_targets").write_text("0\n")


def _marker(tmp_path: Path) -> damon.Marker:
    return damon.Marker(tmp_path / "run/damon.json")


def test_no_damon_is_said(tmp_path):
    found = damon.survey(tmp_path / "missing")
    assert not found.available and "CONFIG_DAMON_SYSFS" in found.reason
    assert damon.why_not(found, "vaddr", _marker(tmp_path)) == found.reason


def test_someone_elses_running_kdamond_is_left_alone(tmp_path):
    admin = _tree(tmp_path, [{"state": "on", "pid": "72", "operations": "paddr"}], ops="paddr")
    found = damon.survey(admin)
    assert found.running and found.running[0].pid == 72
    reason = damon.why_not(found, "paddr", _marker(tmp_path))
    assert reason is not None and "someone else's" in reason and "kdamond 0 (paddr, pid 72)" in reason
    with pytest.raises(damon.DamonUnavailable):
        damon.OwnKdamond.claim("paddr", admin, _marker(tmp_path))
    # untouched: still one kdamond, still on, and its context as it was
    assert (admin / "kdamonds/nr_kdamonds").read_text() == "1\n"
    assert (admin / "kdamonds/0/state").read_text() == "on\n"
    # and it can be read passively
    passive = damon.passive_paddr(found, admin)
    assert passive is not None and passive[0].pid == 72 and passive[1].aggr_us == 100000


def test_someone_elses_stopped_kdamond_is_left_alone_too(tmp_path):
    admin = _tree(tmp_path, [{"state": "off"}])
    reason = damon.why_not(damon.survey(admin), "vaddr", _marker(tmp_path))
    assert reason is not None and "configured by someone else" in reason


def test_no_vaddr_is_said(tmp_path):
    admin = _tree(tmp_path, [{"state": "on", "pid": "72", "operations": "paddr"}], ops="paddr")
    reason = damon.why_not(damon.survey(admin), "vaddr", _marker(tmp_path))
    assert reason == "DAMON here has no vaddr monitoring (avail_operations: paddr)"


def test_nothing_running_gives_llamas_its_own_kdamond(tmp_path):
    admin = _tree(tmp_path, [])
    marker = _marker(tmp_path)
    # the kernel would create kdamonds/0 when nr_kdamonds is written; the fixture has it ready
    _kdamond(admin, 0, "off", "-1", "", "vaddr paddr", goal=True)
    (admin / "kdamonds/nr_kdamonds").write_text("0\n")
    own = damon.OwnKdamond.claim("vaddr", admin, marker)
    ctx = admin / "kdamonds/0/contexts/0"
    assert (admin / "kdamonds/nr_kdamonds").read_text() == "1\n"
    assert (ctx / "operations").read_text() == "vaddr\n"
    assert (ctx / "monitoring_attrs/intervals/sample_us").read_text() == f"{damon.SAMPLE_US}\n"
    assert (ctx / "monitoring_attrs/nr_regions/max").read_text() == f"{damon.MAX_REGIONS}\n"
    assert (ctx / "monitoring_attrs/intervals/intervals_goal/access_bp").read_text() == "400\n"
    assert marker.read()["llamas_pid"] == os.getpid()
    (ctx / "targets/0").mkdir()
    (ctx / "targets/1").mkdir()
    assert own.set_targets([101, 202])
    assert (ctx / "targets/nr_targets").read_text() == "2\n"
    assert (ctx / "targets/1/pid_target").read_text() == "202\n"
    assert (admin / "kdamonds/0/state").read_text() == "on\n"
    # a second claim, by this same llamas, is refused while the first holds it
    (admin / "kdamonds/0/pid").write_text("555\n")
    reason = damon.why_not(damon.survey(admin), "vaddr", marker)
    assert reason is not None and f"started by llamas pid {os.getpid()}" in reason
    # a commit gives a slot's new process its own initial regions
    (admin / "kdamonds/0/state").write_text("on\n")
    (ctx / "targets/1/regions/0").mkdir(parents=True)
    (ctx / "targets/1/regions/1").mkdir(parents=True)
    own.set_targets([101, 303], fresh={1: [(0x1000, 0x5000), (0x5000, 0x9000)]})
    assert (admin / "kdamonds/0/state").read_text() == "commit\n"
    assert (ctx / "targets/1/regions/nr_regions").read_text() == "2\n"
    assert (ctx / "targets/1/regions/1/start").read_text() == f"{0x5000}\n"
    assert (ctx / "targets/1/regions/1/end").read_text() == f"{0x9000}\n"
    own.stop()
    assert (admin / "kdamonds/0/state").read_text() == "off\n"
    assert (admin / "kdamonds/nr_kdamonds").read_text() == "0\n"
    assert marker.read() == {}


def test_a_kdamond_left_by_a_dead_llamas_is_taken_back(tmp_path):
    admin = _tree(tmp_path, [{"state": "on", "pid": "99", "operations": "vaddr"}])
    marker = _marker(tmp_path)
    marker.write(llamas_pid=2**22 + 12345, nr_kdamonds=1, created=1)  # no such process
    assert damon.why_not(damon.survey(admin), "vaddr", marker) is None
    own = damon.OwnKdamond.claim("vaddr", admin, marker)
    assert own.created and (admin / "kdamonds/0/state").read_text() == "off\n"


def test_initial_regions_are_three_spans_cut_evenly_as_damon_cuts_them():
    page, mib = 4096, 1 << 20
    heap = (0x1000_0000, 0x1000_0000 + 2 * mib)
    big = (0x7F00_0000_0000, 0x7F00_0000_0000 + 128 * mib)  # one 128 MiB mapping
    lib = (big[1], big[1] + 8 * mib)  # a library right after it
    stack = (0x7FFF_0000_0000, 0x7FFF_0000_0000 + mib // 2)
    found = damon.initial_regions([stack, big, heap, lib], pieces=10, page=page)
    # the two widest gaps (heap to mmap area, mmap area to stack) are left out
    assert found[0][0] == heap[0] and found[-1][1] == stack[1]
    assert not any(a < big[0] < b for a, b in found) and not any(a < stack[0] < b for a, b in found)
    assert all(a % page == 0 and b % page == 0 and b > a for a, b in found)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(found))
    # the 136 MiB of the mmap area in 9 even pieces of about 15 MiB; the heap and the stack whole
    middle = [(a, b) for a, b in found if big[0] <= a < lib[1]]
    assert len(middle) == 9 and middle[-1][1] == lib[1]
    assert max(b - a for a, b in middle) - min(b - a for a, b in middle) <= 2 * page
    assert (heap[0], heap[1]) in found and (stack[0], stack[1]) in found
    assert damon.initial_regions([]) == []


def _seen(pid: int, start: int, end: int, total: int, aggs: int, last: int, age: int, ns: int) -> Seen:
    return Seen(pid, start, end, total, aggs, last, age, ns)


def test_fold_keeps_the_last_aggregation_and_drops_stale_regions():
    aggr_ns = 1_000_000_000
    first = [_seen(7, 0x1000, 0x5000, 40, 2, 20, 3, 10 * aggr_ns),
             _seen(7, 0x5000, 0x9000, 0, 2, 0, 9, 10 * aggr_ns)]
    current, stale, memory = fold(first, {}, aggr_ns)
    assert [(f.start, f.accesses, f.age) for f in current] == [(0x1000, 20.0, 3), (0x5000, 0.0, 9)]
    assert not stale
    # two more aggregations: 10 and 12 accesses; the second region split at 0x7000 (a new key,
    # and the old one no longer reported)
    later = [_seen(7, 0x1000, 0x5000, 62, 4, 12, 0, 12 * aggr_ns),
             _seen(7, 0x5000, 0x7000, 0, 4, 0, 11, 10 * aggr_ns),
             _seen(7, 0x7000, 0x9000, 3, 1, 3, 0, 12 * aggr_ns)]
    current, stale, memory = fold(later, memory, aggr_ns)
    assert [(f.start, f.accesses) for f in current] == [(0x1000, 11.0), (0x7000, 3.0)]
    assert [s.start for s in stale] == [0x5000]
    assert (7, 0x5000) not in memory
    # no aggregation since: the last one stands
    current, _stale, _memory = fold(later[:1], memory, aggr_ns)
    assert current[0].accesses == 12.0


def test_fold_says_how_many_aggregations_each_region_covers_and_when():
    aggr_ns = 1_000_000_000
    _current, _stale, memory = fold([_seen(7, 0x1000, 0x5000, 40, 2, 20, 3, 10 * aggr_ns)], {}, aggr_ns)
    later = [_seen(7, 0x1000, 0x5000, 40, 5, 0, 0, 13 * aggr_ns), _seen(7, 0x5000, 0x9000, 0, 1, 0, 0, 13 * aggr_ns)]
    current, _stale, memory = fold(later, memory, aggr_ns)
    assert [(f.aggregations, f.seen_ns) for f in current] == [(3, 13 * aggr_ns), (1, 13 * aggr_ns)]
    current, _stale, _memory = fold(later, memory, aggr_ns)
    assert [f.aggregations for f in current] == [0, 0]  # nothing new since


MIB = 1 << 20


def _agg(t: float, *regions: tuple[int, int, float], aggregations: int = 1) -> list[Folded]:
    """One process's regions at an aggregation that ended at t seconds: (start MiB, end MiB, accesses)."""
    return [Folded(7, a * MIB, b * MIB, acc, 0, aggregations, int(t * 1e9)) for a, b, acc in regions]


def test_quiet_keeps_each_range_s_time_while_damon_refines_the_boundary():
    """The lab's case: a 128 MiB mapping, idle below 64 MiB and read over and over above it.
    DAMON moves the boundary of the idle region up a piece at a time; every piece it takes in
    resets DAMON's age of the whole region (rounded down), but the ranges idle from the start
    keep their time here."""
    steps = [
        _agg(1.0, (0, 128, 12.0)),
        _agg(2.0, (0, 52, 0.0), (52, 128, 17.0)),
        _agg(3.0, (0, 60, 0.0), (60, 128, 19.0)),
        _agg(4.0, (0, 60, 0.0), (60, 128, 19.0)),
        _agg(5.0, (0, 62, 0.0), (62, 65, 4.0), (65, 128, 20.0)),
    ]
    known: list[Quiet] = []
    last = None
    for regions in steps:
        known, last = quiet(known, regions, last, 1.0, 2.0), regions[0].seen_ns / 1e9
    assert [(q.start // MIB, q.end // MIB, q.since) for q in known] == [(0, 52, 2.0 - 1.0), (52, 60, 2.0), (60, 62, 4.0)]
    assert quiet_age(known, 0, 64 * MIB, 5.0) == [(0, 52 * MIB, 4.0), (52 * MIB, 60 * MIB, 3.0),
                                                  (60 * MIB, 62 * MIB, 1.0), (62 * MIB, 64 * MIB, None)]
    # an access anywhere in a region ends every quiet range inside it
    known = quiet(known, _agg(6.0, (0, 30, 3.0), (30, 62, 0.0), (62, 128, 20.0)), 5.0, 1.0, 2.0)
    assert [(q.start // MIB, q.end // MIB, q.since) for q in known] == [(30, 52, 1.0), (52, 60, 2.0), (60, 62, 4.0)]
    # no aggregation since the last read: what was known stands
    assert quiet(known, _agg(6.0, (0, 128, 0.0), aggregations=0), 6.0, 1.0, 2.0) == known
    # one access in a region that took in the edge of the hot range: below what makes it hot,
    # so the quiet ranges in it stand (as DAMON's age does), but nothing new starts in it
    assert quiet(known, _agg(7.0, (0, 64, 1.0), (64, 128, 20.0)), 6.0, 1.0, 2.0) == known
    assert quiet([], _agg(7.0, (0, 64, 1.0)), 6.0, 1.0, 2.0) == []


def test_quiet_starts_over_where_a_region_does_not_reach_back_to_the_last_read():
    known = [Quiet(0, 64 * MIB, 1.0)]
    # three aggregations since the read at t=5; the region below 32 MiB is one split off two
    # aggregations ago, so nothing says what came in the first: quiet from its own first one
    regions = [*_agg(8.0, (0, 32, 0.0), aggregations=2), *_agg(8.0, (32, 64, 0.0), aggregations=3)]
    found = quiet(known, regions, 5.0, 1.0, 2.0)
    assert [(q.start // MIB, q.end // MIB, q.since) for q in found] == [(0, 32, 6.0), (32, 64, 1.0)]
    # the first read: quiet from the start of the aggregations read
    assert quiet([], _agg(8.0, (0, 32, 0.0), aggregations=2), None, 1.0, 2.0) == [Quiet(0, 32 * MIB, 6.0)]


def test_quiet_neighbours_join_only_when_their_times_are_close_for_their_age():
    regions = _agg(100.0, (0, 4, 0.0), aggregations=1)
    # 40 s and 39 s quiet: within a tenth of the younger's age, joined as the younger
    assert quiet([Quiet(0, MIB, 60.0), Quiet(MIB, 4 * MIB, 61.0)], regions, 99.0, 1.0, 2.0) == [Quiet(0, 4 * MIB, 61.0)]
    # 3 s and 1 s quiet: kept apart, so the older range turns cold on time
    apart = quiet([Quiet(0, MIB, 97.0), Quiet(MIB, 4 * MIB, 99.0)], regions, 99.0, 1.0, 2.0)
    assert apart == [Quiet(0, MIB, 97.0), Quiet(MIB, 4 * MIB, 99.0)]


def test_heat_thresholds():
    assert metrics.hot_min_accesses(20) == 2.0 and metrics.hot_min_accesses(5) == 1.0
    assert metrics.heat(2.0, 0.0, 20) == "hot"
    assert metrics.heat(1.9, 0.0, 20) == "warm"
    assert metrics.heat(0.0, metrics.COLD_AGE_S - 0.1, 20) == "warm"
    assert metrics.heat(0.0, metrics.COLD_AGE_S, 20) == "cold"


def test_merge_and_totals():
    regions = [AccessRegion(0, 100, 10.0, 1.0, "hot", {0: 100}, 0.6),
               AccessRegion(100, 300, 4.0, 3.0, "hot", {0: 100, 1: 100}, 0.45),
               AccessRegion(300, 400, 0.0, 9.0, "cold", {1: 100}, None),
               AccessRegion(500, 600, 0.0, 9.0, "cold", {1: 50}, None)]  # not touching: apart
    merged = merge(regions)
    assert [(r.start, r.end, r.heat) for r in merged] == [(0, 300, "hot"), (300, 400, "cold"), (500, 600, "cold")]
    assert merged[0].accesses == 6.0 and merged[0].age_s == 1.0
    assert merged[0].bytes_by_node == {0: 200, 1: 100}
    assert merged[0].written_fraction == pytest.approx(0.5, abs=1e-3)
    access = totals(regions)
    assert access.hot_bytes_by_node == {0: 200, 1: 100} and access.cold_bytes_by_node == {1: 150}


def test_physical_ranges_split_over_nodes():
    page = pagemap.PAGE_SIZE
    ranges = [PfnRange(0, 100, 0), PfnRange(100, 200, 1)]
    assert physical_by_node(50 * page, 150 * page, ranges) == {0: 50 * page, 1: 50 * page}
    assert physical_by_node(300 * page, 400 * page, ranges) == {}


def test_host_heat_per_node_is_what_classifying_every_region_gives():
    """_physical takes a region cold whole where DAMON's age alone says so (no quiet cut can
    make it younger); what it adds up per node and heat is what cutting every region gives."""
    page = pagemap.PAGE_SIZE
    probe = AccessProbe(ProbeOptions(bpf_dir=Path("."), pfn_ranges=[PfnRange(0, 1 << 16, 0),
                                                                     PfnRange(1 << 16, 1 << 17, 1)]))
    probe.intervals = damon.Intervals(100_000, 1_000_000, 60_000_000)  # 1 s aggregations
    probe.quiet_of, probe._quiet_ends, probe.heat_of = {}, {}, None
    span = 1 << 12  # pages a region
    current = [Folded(0, i * span * page, (i + 1) * span * page, accesses, age, 1, 10 * 10**9)
               for i, (accesses, age) in enumerate(itertools.product((0.0, 0.5, 3.0), (0, 2, 3, 9)))]
    # the first quarter of each idle region has been quiet for 8 s, longer than DAMON's age
    probe.quiet_of[0] = ([Quiet(r.start, r.start + (r.end - r.start) // 4, 2.0) for r in current
                          if r.accesses == 0], 10.0)
    out = SnapshotBuilder()
    probe._physical(current, out)
    expected: dict[int, dict[str, int]] = {}
    for region in current:
        for lo, hi, heat, _age in probe._classify(region, region.start, region.end):
            for node, size in physical_by_node(lo, hi, probe.options.pfn_ranges).items():
                row = expected.setdefault(node, {"hot": 0, "warm": 0, "cold": 0})
                row[heat] += size
    assert out.node_heat == expected
    assert all(row["hot"] and row["warm"] and row["cold"] for row in expected.values()), expected


def test_pagemap_entries_decode():
    node_of = pagemap.NodeOfPfn([PfnRange(0x100, 0x200, 0), PfnRange(0x200, 0x300, 1)])
    entries = [
        pagemap.PRESENT | 0x150,  # node0
        pagemap.PRESENT | pagemap.SOFT_DIRTY | 0x250,  # node1, written
        0,  # not present
        pagemap.SWAPPED | pagemap.SOFT_DIRTY,  # swapped: not resident
        pagemap.PRESENT,  # PFN hidden (not root)
        pagemap.PRESENT | 0x900,  # in no node's range
    ]
    out = pagemap.Placement()
    pagemap.decode(struct.pack(f"<{len(entries)}Q", *entries), node_of, out)
    assert (out.pages_read, out.present, out.soft_dirty, out.unknown_node) == (6, 4, 1, 2)
    assert out.by_node == {0: 1, 1: 1}
    assert out.written_fraction == 0.25
    out.scale = 2.0
    assert out.bytes_by_node() == {0: 2 * pagemap.PAGE_SIZE, 1: 2 * pagemap.PAGE_SIZE}


def test_pagemap_scan_reads_a_range_whole_or_sampled(tmp_path):
    """Against a pagemap file laid out as the kernel's: one u64 per virtual page."""
    pages = 4096
    node_of = pagemap.NodeOfPfn([PfnRange(0, 1 << 20, 0)])
    (tmp_path / "42").mkdir()
    (tmp_path / "42/pagemap").write_bytes(b"".join(
        struct.pack("<Q", pagemap.PRESENT | (i + 1) if i % 2 else 0) for i in range(pages)))
    with pagemap.Pagemap(42, tmp_path) as pm:
        whole = pm.sample(0, pages * pagemap.PAGE_SIZE, node_of, max_pages=pages).placement(
            0, pages * pagemap.PAGE_SIZE)
        sampled = pm.sample(0, pages * pagemap.PAGE_SIZE, node_of, max_pages=1024).placement(
            0, pages * pagemap.PAGE_SIZE)
    assert whole.pages_read == pages and whole.by_node == {0: pages // 2}
    assert sampled.pages_read == 1024 and sampled.scale == 4.0
    assert sampled.bytes_by_node() == {0: pages // 2 * pagemap.PAGE_SIZE}



def test_shared_pages_are_the_present_ones_another_process_maps_too(tmp_path):
    """pagemap's bit 56 (mapped by this process alone) tells the pages a move leaves by design."""
    entries = [pagemap.PRESENT | pagemap.EXCLUSIVE | 5, pagemap.PRESENT | 6, 0, pagemap.PRESENT | 7,
               pagemap.SWAPPED]
    (tmp_path / "42").mkdir()
    (tmp_path / "42/pagemap").write_bytes(struct.pack(f"<{len(entries)}Q", *entries))
    size = pagemap.PAGE_SIZE
    assert pagemap.shared_pages(42, [(0, 5)], tmp_path) == 2
    assert pagemap.shared_pages(42, [(0, 1), (3 * size, 2)], tmp_path) == 1
    assert pagemap.shared_pages(43, [(0, 5)], tmp_path) == 0  # gone


def test_present_runs_are_found_whole_capped_and_counted_shared(tmp_path):
    """A whole-process move journals the present pages of a mapping as runs read from pagemap
    (bytes.find over the entries' top bytes): the gaps split runs, no run passes the cap, and
    the pages another process maps too are counted."""
    present, shared = pagemap.PRESENT | pagemap.EXCLUSIVE | 9, pagemap.PRESENT | 9
    entries = [0, present, present, shared, 0, 0, present, pagemap.SWAPPED, present, present, present]
    (tmp_path / "42").mkdir()
    (tmp_path / "42/pagemap").write_bytes(struct.pack(f"<{len(entries)}Q", *entries))
    size = pagemap.PAGE_SIZE
    with pagemap.Pagemap(42, tmp_path) as pm:
        assert pm.present_runs(0, len(entries) * size, 1 << 24) == ([(size, 3), (6 * size, 1), (8 * size, 3)], 1)
        assert pm.present_runs(0, len(entries) * size, 2) == (
            [(size, 2), (3 * size, 1), (6 * size, 1), (8 * size, 2), (10 * size, 1)], 1)
        assert pm.present_runs(4 * size, 6 * size, 8) == ([], 0)  # nothing present
        assert pm.present_runs(9 * size, 11 * size, 8) == ([(9 * size, 2)], 0)  # ends present


def test_pages_per_mapping_reads_numa_maps_per_mapping(tmp_path):
    from llamas_ebpf.kernel import mempolicy

    (tmp_path / "42").mkdir()
    (tmp_path / "42/numa_maps").write_text(
        "55d0c0a00000 default file=/usr/bin/x mapped=3 N0=2 N1=1 kernelpagesize_kB=4\n"
        "7f0000000000 prefer:1 anon=20000 dirty=20000 N1=20000 kernelpagesize_kB=4\n"
        "7f1000000000 default file=/dev/hugepages/huge\\040file huge dirty=2 N0=2 kernelpagesize_kB=2048\n"
        "7ffd00000000 default stack\n")
    assert mempolicy.pages_per_mapping(42, tmp_path) == {
        0x55D0C0A00000: ({0: 2, 1: 1}, False),
        0x7F0000000000: ({1: 20000}, False),
        0x7F1000000000: ({0: 2}, True),
        0x7FFD00000000: ({}, False),
    }
    # summed over the mappings, or over those starting inside the ranges given
    assert mempolicy.pages_per_node(42, tmp_path) == {0: 4, 1: 20001}
    assert mempolicy.pages_per_node(42, tmp_path, ranges=[(0x7F0000000000, 0x7F0000001000)]) == {1: 20000}


def test_regions_are_cut_at_mappings():
    vmas = [(0x1000, 0x3000), (0x3000, 0x4000), (0x8000, 0x9000)]
    assert pagemap.pieces(0x2000, 0x8800, vmas) == [(0x2000, 0x3000, vmas[0]), (0x3000, 0x4000, vmas[1]),
                                                     (0x8000, 0x8800, vmas[2])]
    assert pagemap.pieces(0x4000, 0x8000, vmas) == []
    assert pagemap.pieces(0x0, 0x1800, vmas) == [(0x1000, 0x1800, vmas[0])]


def test_neighbours_written_differently_stay_apart():
    regions = [AccessRegion(0, 100, 20.0, 1.0, "hot", {0: 100}, 1.0),
               AccessRegion(100, 200, 20.0, 1.0, "hot", {0: 100}, 0.0)]
    assert len(merge(regions)) == 2


def test_a_sample_places_any_range_inside_its_mapping(tmp_path):
    """Chunks read once, placed later for ranges that move (DAMON's regions)."""
    pages = 4 * pagemap.CHUNK
    node_of = pagemap.NodeOfPfn([PfnRange(0, 1000, 0), PfnRange(1000, 1 << 20, 1)])
    # first half of the pages on node0, second half on node1, the last quarter soft-dirty
    entries = [pagemap.PRESENT | (1 + i if i < pages // 2 else 2000 + i) | (pagemap.SOFT_DIRTY if i >= 3 * pages // 4 else 0)
               for i in range(pages)]
    (tmp_path / "7").mkdir()
    (tmp_path / "7/pagemap").write_bytes(struct.pack(f"<{pages}Q", *entries))
    size = pagemap.PAGE_SIZE
    with pagemap.Pagemap(7, tmp_path) as pm:
        whole = pm.sample(0, pages * size, node_of, max_pages=pages)
        sparse = pm.sample(0, pages * size, node_of, max_pages=2 * pagemap.CHUNK)
    assert len(whole.chunks) == 4 and whole.scale == 1.0
    first_half = whole.placement(0, pages // 2 * size)
    assert first_half.bytes_by_node() == {0: pages // 2 * size}
    last_quarter = whole.placement(3 * pages // 4 * size, pages * size)
    assert last_quarter.written_fraction == 1.0 and last_quarter.bytes_by_node() == {1: pages // 4 * size}
    assert len(sparse.chunks) == 2 and sparse.scale == 2.0
    assert sparse.placement(0, pages * size).bytes_by_node() == {0: pages // 2 * size, 1: pages // 2 * size}
    # a range between two sampled chunks takes the density of the nearest one
    assert sparse.placement(pagemap.CHUNK * size, pagemap.CHUNK * size + 4 * size).bytes_by_node() == {0: 4 * size}


class Builder(SnapshotBuilder):
    """One interval's processes and their faults, some of them dead, without /proc."""

    def __init__(self, faults: dict[int, int], dead: frozenset[int] | set[int] = frozenset()):
        super().__init__()
        self.dead = dead
        for pid, count in faults.items():
            self.process(pid).faults.user = count

    def alive(self, pid: int) -> bool:
        return pid not in self.dead


def test_targets_keep_their_slots_and_yield_to_processes_wanted_more():
    """Chosen by the faults of the interval (a cgroup-filtered sensor, so /proc is not ranked):
    a slot keeps its process while it lives; a busier one takes the least wanted slot; one asked
    about is never displaced; a dead one's slot is given at once."""
    probe = AccessProbe(ProbeOptions(bpf_dir=Path("."), cgroup_ids=[1], access_targets=2))
    probe.targets, probe.ranked, probe.retargeted = [], [], -100.0
    assert probe._choose(Builder({10: 50, 11: 40, 12: 30}), 0.0) == [10, 11]
    probe.targets, probe.retargeted = [10, 11], 0.0
    # 12 is busier now, but within RETARGET_S nothing moves; after it, 12 takes the slot of 11
    assert probe._choose(Builder({12: 90, 10: 80, 11: 1}), 1.0) == [10, 11]
    assert probe._choose(Builder({12: 90, 10: 80, 11: 1}), RETARGET_S + 1) == [10, 12]
    # a process asked about (focus) comes in at once and is never the one that leaves
    probe.targets, probe.retargeted = [10, 12], RETARGET_S + 1
    probe.options.focus = {99}
    assert probe._choose(Builder({12: 90, 10: 80}), RETARGET_S + 2) == [99, 12]
    # a dead target's slot is given at once
    probe.targets, probe.retargeted = [99, 12], RETARGET_S + 2
    assert probe._choose(Builder({10: 80}, dead={12}), RETARGET_S + 2.5) == [99, 10]


def test_a_dead_target_holds_its_slot_so_the_others_keep_theirs():
    probe = AccessProbe(ProbeOptions(bpf_dir=Path("."), cgroup_ids=[1], access_targets=4, focus={12}))
    probe.targets, probe.ranked, probe.retargeted = [10, 11, 12], [], 0.0
    out = Builder({10: 5}, dead={11})
    # 11 died and nothing waits for a slot: no commit at all, 12 stays in the third slot
    assert probe._choose(out, 100.0) == [10, 11, 12]
    out.process(13).faults.user = 50  # now one waits: it takes the dead slot
    assert probe._choose(out, 100.0) == [10, 13, 12]
