"""Memory access, not only faults: DAMON's regions, counted in BPF (bpf/damon_access.c).

A process that uses its memory in the steady state takes no faults; DAMON sees its accesses
anyway, by sampling page-table accessed bits per region. The chain:
  1. damon-vaddr: a kdamond of llamas's own watches up to [access] targets processes (the ones
     asked about first, then the busiest by faults and by resident memory); per process.
  2. damon-paddr: a kdamond of llamas's own over physical memory; host-wide, per node only.
  3. damon-paddr-passive: someone else's paddr kdamond, read through the tracepoint only,
     at that kdamond's intervals; host-wide.
Where none works, the snapshot says so and labels what is left: NUMA hinting faults (sampled by
the kernel's scanner, the numa_hint probe) or nothing finer than a mapping (per VMA).

Per interval, user space reads the region map whole, folds each region's accesses since the last
read, sorts regions into hot, warm and cold (metrics.heat), and finds where each region's pages
are and which were written from /proc/PID/pagemap (PFN -> node; soft-dirty bits, cleared at most
every SOFT_DIRTY_PERIOD_S), reading at most PAGEMAP_PAGES entries per interval, and a region's
placement at most every PLACEMENT_PERIOD_S.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import os
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from llamas_ebpf import bpf_headers, metrics
from llamas_ebpf.kernel import damon, pagemap
from llamas_ebpf.kernel.features import Capabilities
from llamas_ebpf.kernel.nodes import PfnRange
from llamas_ebpf.probes.base import (
    HEALTH_DROPS,
    HEALTH_REGION_FULL,
    AttachMethod,
    Probe,
    ProgramSource,
    SnapshotBuilder,
    table_items,
)
from llamas_ebpf.snapshot import AccessInfo, AccessRegion, Heat, ProcessAccess, Region

_H = bpf_headers.defines("llamas.h")
DAMON_TARGETS = _H["LLAMAS_DAMON_TARGETS"]
_TRACEPOINT = "damon:damon_aggregated"
_KEY = struct.Struct("<IIQ")
_VALUE = struct.Struct("<6Q")
RSS_REFRESH_S = 10.0  # how often the resident-memory ranking of all processes is read again
RETARGET_S = 5.0  # targets change at most this often (a dead or newly asked-for one: at once)


def _tracepoint_blocker(caps: Capabilities) -> str | None:
    feature = caps.program("tracepoint")
    if not feature.available:
        return f"tracepoint programs unavailable: {feature.reason}"
    if not caps.has_tracepoint(_TRACEPOINT):
        return f"tracepoint {_TRACEPOINT} not in this kernel (CONFIG_DAMON)"
    return None


def _own(operations: str) -> AttachMethod:
    def blocker(caps: Capabilities) -> str | None:
        return _tracepoint_blocker(caps) or damon.why_not(caps.damon, operations, damon.default_marker())

    return AttachMethod(f"damon-{operations}", blocker)


def _passive(caps: Capabilities) -> str | None:
    if (reason := _tracepoint_blocker(caps)) is not None:
        return reason
    if not caps.damon.available:
        return caps.damon.reason
    if damon.passive_paddr(caps.damon) is None:
        return "no running paddr kdamond of someone else's to read"
    return None


# ---- folding the map into regions (pure, for the unit tests) -------------------------------

@dataclass
class Seen:
    """One region as the map holds it."""

    pid: int
    start: int
    end: int
    accesses_total: int
    aggregations: int
    last_accesses: int
    age: int  # aggregations
    seen_ns: int


@dataclass
class Folded:
    pid: int
    start: int
    end: int
    accesses: float  # per aggregation, over the aggregations since the last read
    age: int
    aggregations: int = 1  # how many aggregations since the last read `accesses` covers (0: none new)
    seen_ns: int = 0  # bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the newest of them


def parse(items: Iterable[tuple[bytes, bytes]]) -> list[Seen]:
    seen = []
    for raw_key, raw_value in items:
        pid, _pad, start = _KEY.unpack(raw_key)
        end, total, aggregations, last, age, seen_ns = _VALUE.unpack(raw_value)
        seen.append(Seen(pid, start, end, total, aggregations, last, age, seen_ns))
    return seen


def fold(regions: Sequence[Seen], previous: dict[tuple[int, int], tuple[int, int]],
         aggr_ns: int) -> tuple[list[Folded], list[Seen], dict[tuple[int, int], tuple[int, int]]]:
    """The regions of each target's last aggregation, with their accesses since the last read;
    the stale ones (reported before the target's last aggregation: merged or split away since);
    and what to remember for the next read ((pid, start) -> (accesses total, aggregations))."""
    newest: dict[int, int] = {}
    for r in regions:
        newest[r.pid] = max(newest.get(r.pid, 0), r.seen_ns)
    current, stale = [], []
    remember: dict[tuple[int, int], tuple[int, int]] = {}
    for r in regions:
        if r.seen_ns < newest[r.pid] - aggr_ns // 2:
            stale.append(r)
            continue
        before = previous.get((r.pid, r.start))
        if before is not None and r.aggregations > before[1] and r.accesses_total >= before[0]:
            accesses = (r.accesses_total - before[0]) / (r.aggregations - before[1])
            new = r.aggregations - before[1]
        elif before is not None and r.aggregations == before[1]:
            accesses = float(r.last_accesses)  # no aggregation since: the last one stands
            new = 0
        else:
            accesses = r.accesses_total / max(r.aggregations, 1)
            new = max(r.aggregations, 1)
        remember[(r.pid, r.start)] = (r.accesses_total, r.aggregations)
        current.append(Folded(r.pid, r.start, r.end, accesses, r.age, new, r.seen_ns))
    current.sort(key=lambda f: (f.pid, f.start))
    return current, stale, remember


class Quiet(NamedTuple):
    """A range of one process quiet since `since` (quiet: the first aggregation from then on saw
    no access in it, and none since saw it hot). A tuple: thousands are made at each
    aggregation of a host-wide kdamond, and a frozen dataclass takes twice as long to make
    (340 against 170 ns here)."""

    start: int
    end: int
    since: float  # CLOCK_MONOTONIC seconds: where the first of those aggregations began


QUIET_APART = 0.1  # quiet neighbours join once their times differ by at most this share of the younger's age


def quiet(before: Sequence[Quiet], regions: Sequence[Folded], last_read_s: float | None,
          aggr_s: float, hot_min: float) -> list[Quiet]:
    """Where one process has been quiet, carried from one read of DAMON's regions to the next.

    Why not DAMON's own age alone: the kernel keeps a region's age in whole aggregations and
    averages it by size when two regions merge, rounding down. Where a hot range meets an idle
    one, DAMON finds the boundary a piece at a time: each piece split off the straddling region
    starts at age 0 and, merged into its idle neighbour, takes up to a whole aggregation off the
    neighbour's age. In the lab a 64 MiB range no one touched stayed at age 0-2 for 16 s that
    way. Here what is quiet is kept per range, whatever region it falls in at each aggregation.

    Quiet since T: the first aggregation from T on saw no access in its region, and none since
    saw it `hot_min` accesses or more (what makes a region hot). A few accesses in between do
    not end it, as they do not reset DAMON's age: a region that takes in the edge of a hot
    neighbour samples it now and then. Cold still needs no access at the last aggregation.

    `regions`: the process's regions at this read, sorted by start; `last_read_s`: when the
    newest aggregation of the last read ended (None: no read before). A region whose
    aggregations since the last read stayed under `hot_min` (on average, where a read covers
    more than one) keeps the quiet ranges inside it.
    If they saw no access at all, the rest of it is quiet too: from the last read, where its
    aggregations reach back to that read (a region born since of a split or merge may not),
    else from the start of its first aggregation. A region seen hot ends every quiet range in it."""
    ends = [q.end for q in before]
    since_read = max((r.aggregations for r in regions), default=0)  # aggregations since the last read
    out: list[Quiet] = []
    for r in regions:
        carried = last_read_s is not None and r.aggregations >= since_read
        if r.aggregations == 0 or (carried and 0 < r.accesses < hot_min):  # what was known stands
            out += _inside(before, ends, r.start, r.end)
            continue
        if r.accesses > 0:
            continue
        began = r.seen_ns / 1e9 - r.aggregations * aggr_s
        if carried and last_read_s is not None:
            began = last_read_s
        at = r.start
        for q in _inside(before, ends, r.start, r.end) if carried else []:
            if q.start > at:
                out.append(Quiet(at, q.start, began))
            out.append(q)
            at = q.end
        if at < r.end:
            out.append(Quiet(at, r.end, began))
    now = max((r.seen_ns / 1e9 for r in regions), default=0.0)
    joined: list[Quiet] = []
    for q in out:
        last = joined[-1] if joined else None
        if (last is not None and last.end == q.start
                and abs(last.since - q.since) <= QUIET_APART * (now - max(last.since, q.since))):
            joined[-1] = Quiet(last.start, q.end, max(last.since, q.since))  # the younger: never colder
        else:
            joined.append(q)
    return joined


def _inside(quiet: Sequence[Quiet], ends: Sequence[int], start: int, end: int) -> list[Quiet]:
    """The parts of the sorted, disjoint `quiet` ranges inside [start, end)."""
    found = []
    for q in quiet[bisect.bisect_right(ends, start):]:
        if q.start >= end:
            break
        found.append(Quiet(max(q.start, start), min(q.end, end), q.since))
    return found


def quiet_age(quiet: Sequence[Quiet], start: int, end: int, now: float,
              ends: Sequence[int] | None = None) -> list[tuple[int, int, float | None]]:
    """[start, end) cut where `quiet` says how long each part has been quiet: (start, end, seconds
    quiet or None where it was not). `ends`: the ranges' ends, where the caller keeps them (a
    process's regions ask the same list one after another)."""
    if ends is None:
        ends = [q.end for q in quiet]
    pieces: list[tuple[int, int, float | None]] = []
    at = start
    for q in _inside(quiet, ends, start, end):
        if q.start > at:
            pieces.append((at, q.start, None))
        pieces.append((q.start, q.end, max(0.0, now - q.since)))
        at = q.end
    if at < end:
        pieces.append((at, end, None))
    return pieces


WRITTEN_APART = 0.25  # neighbours whose written fractions differ by more stay apart


def merge(regions: Sequence[AccessRegion]) -> list[AccessRegion]:
    """Neighbours (touching, of one heat, written alike) as one region: accesses weighted by
    size, the youngest age, bytes summed, written fractions weighted by resident bytes."""
    merged: list[AccessRegion] = []
    for region in sorted(regions, key=lambda r: r.start):
        last = merged[-1] if merged else None
        if (last is None or last.end != region.start or last.heat != region.heat
                or abs((last.written_fraction or 0) - (region.written_fraction or 0)) > WRITTEN_APART):
            merged.append(AccessRegion(region.start, region.end, region.accesses, region.age_s,
                                       region.heat, dict(region.bytes_by_node), region.written_fraction))
            continue
        a, b = last.end - last.start, region.end - region.start
        last.accesses = round((last.accesses * a + region.accesses * b) / (a + b), 3)
        last.age_s = min(last.age_s, region.age_s)
        ra, rb = sum(last.bytes_by_node.values()), sum(region.bytes_by_node.values())
        if last.written_fraction is not None and region.written_fraction is not None and ra + rb:
            both = last.written_fraction * ra + region.written_fraction * rb
            last.written_fraction = round(both / (ra + rb), 4)
        elif region.written_fraction is not None and not ra:
            last.written_fraction = region.written_fraction
        for node, size in region.bytes_by_node.items():
            last.bytes_by_node[node] = last.bytes_by_node.get(node, 0) + size
        last.end = region.end
    return merged


def physical_by_node(start: int, end: int, ranges: Sequence[PfnRange]) -> dict[int, int]:
    """Bytes of the physical range [start, end) on each node."""
    out: dict[int, int] = {}
    page = pagemap.PAGE_SIZE
    for r in ranges:
        low, high = max(start, r.start * page), min(end, r.end * page)
        if high > low:
            out[r.node] = out.get(r.node, 0) + high - low
    return out


def totals(regions: Iterable[AccessRegion]) -> ProcessAccess:
    access = ProcessAccess()
    for region in regions:
        into = {"hot": access.hot_bytes_by_node, "warm": access.warm_bytes_by_node,
                "cold": access.cold_bytes_by_node}[region.heat]
        for node, size in region.bytes_by_node.items():
            into[node] = into.get(node, 0) + size
    return access


def resident_ranking(limit: int) -> list[int]:
    """The processes with the most resident pages (/proc/PID/statm), most first."""
    ranked = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/statm", "rb") as statm:
                    resident = int(statm.read().split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if resident:
                ranked.append((resident, int(entry.name)))
    ranked.sort(reverse=True)
    return [pid for _resident, pid in ranked[:limit]]


@dataclass
class Written:
    """Soft-dirty state of one monitored process."""

    cleared_at: float
    last: list[tuple[int, int, float]] = field(default_factory=list)  # (start, end, fraction)
    window_s: float | None = None


class AccessProbe(Probe):
    name = "access"
    reads_processes = True
    chain = (_own("vaddr"), _own("paddr"), AttachMethod("damon-paddr-passive", _passive))

    def prepare(self, caps: Capabilities) -> None:
        super().prepare(caps)
        self.kdamond: damon.OwnKdamond | None = None
        self.thread: int | None = None
        self.intervals = damon.Intervals(damon.SAMPLE_US, damon.AGGR_US, damon.UPDATE_US)
        self.remember: dict[tuple[int, int], tuple[int, int]] = {}
        self.reports = -1  # damon_reports at the last read of the region map
        self.current: list[Folded] | None = None
        self.regions_of: dict[int, list[AccessRegion]] = {}
        # pid (0: physical) -> its quiet ranges, and when the newest aggregation read ended
        self.quiet_of: dict[int, tuple[list[Quiet], float]] = {}
        self._quiet_ends: dict[int, tuple[list[Quiet], list[int]]] = {}  # pid -> (quiet_of's list, its ends)
        self.heat_of: tuple[list[Folded], dict[int, dict[str, int]]] | None = None  # paddr: per node, cached
        self.targets: list[int] = []
        self.retargeted = 0.0
        self.ranked: list[int] = []
        self.ranked_at = -RSS_REFRESH_S
        self.written: dict[int, Written] = {}
        self.soft_dirty = caps.soft_dirty.available and self.options.soft_dirty
        # pid -> (when read, whether its soft-dirty window was long enough then, mapping -> its
        # pagemap sample): pages are read again every PLACEMENT_PERIOD_S, regions placed from it
        self.samples: dict[int, tuple[float, bool, dict[tuple[int, int], pagemap.Sample]]] = {}
        self.node_of = pagemap.NodeOfPfn(self.options.pfn_ranges)
        self.reasons = ""
        self._health_prev = (0, 0)  # (map full, drops) at the last collect

    def source(self, method: str) -> ProgramSource:
        return ProgramSource("damon_access.c")

    def bind(self, method: str) -> None:
        assert self.caps is not None
        self.regions_table = self.bpf["damon_regions"]
        if method == "damon-paddr-passive":
            found = damon.passive_paddr(damon.survey())
            if found is None:
                raise RuntimeError("the paddr kdamond stopped")
            kdamond, self.intervals = found
            self._set_thread(kdamond.pid)
        else:
            operations = method.removeprefix("damon-")
            try:
                self.kdamond = damon.OwnKdamond.claim(operations)
            except damon.DamonUnavailable as exc:
                raise RuntimeError(str(exc)) from None
            if operations == "paddr":
                self.kdamond.monitor_physical()
                self._targets_started([0])
            self.intervals = self.kdamond.intervals()

    def _follow_passive(self) -> None:
        """Someone else's kdamond may stop, or restart as another thread: follow it, read-only."""
        found = damon.passive_paddr(damon.survey())
        if found is None:
            self.reasons = "the paddr kdamond read passively is no longer running"
            self._set_thread(None)
            return
        kdamond, self.intervals = found
        self.reasons = ""
        if kdamond.pid != self.thread:
            self._set_thread(kdamond.pid)
            self.remember, self.current, self.quiet_of = {}, None, {}

    def _set_thread(self, pid: int | None) -> None:
        self.thread = pid
        self.bpf["damon_thread"][ctypes.c_int(0)] = ctypes.c_uint32(pid or 0)

    def _targets_started(self, pids: list[int]) -> None:
        slots = self.bpf["damon_target_pid"]
        for slot in range(DAMON_TARGETS):
            slots[ctypes.c_int(slot)] = ctypes.c_uint32(pids[slot] if slot < len(pids) else 0)
        assert self.kdamond is not None
        self._set_thread(self.kdamond.thread())

    # ---- choosing the processes to watch (vaddr) ----

    def _choose(self, out: SnapshotBuilder, now: float) -> list[int]:
        limit = min(self.options.access_targets, DAMON_TARGETS)
        by_faults: list[int] = []
        if not self.options.filtered:  # -p or --cgroup: those processes only (out has only them)
            if now - self.ranked_at >= RSS_REFRESH_S:
                self.ranked, self.ranked_at = resident_ranking(limit * 2), now
            by_faults = [p.pid for p in sorted(out.processes.values(), key=lambda p: -p.total_faults)
                         if p.total_faults][: limit * 2]
        elif self.options.cgroup_ids:
            by_faults = [p.pid for p in sorted(out.processes.values(), key=lambda p: -p.total_faults)]
        me = os.getpid()
        wanted: list[int] = []
        for pid in [*self.options.pids, *sorted(self.options.focus), *by_faults, *self.ranked]:
            if pid != me and pid not in wanted and out.alive(pid):
                wanted.append(pid)
        must = set(self.options.pids) | self.options.focus
        # a slot keeps its process while it lives (DAMON's regions of a target mean something
        # only while its pid stays); a process wanted more takes the slot of one wanted less
        keep: list[int | None] = [pid if out.alive(pid) else None for pid in self.targets]
        missing = [pid for pid in wanted[:limit] if pid not in keep]
        urgent = bool(missing) and (any(pid is None for pid in keep) or any(pid in must for pid in missing))
        if not missing and not urgent:
            return self.targets
        if not urgent and now - self.retargeted < RETARGET_S:
            return self.targets
        rank = {pid: i for i, pid in enumerate(wanted)}
        chosen = list(keep)
        for pid in missing:
            free = next((i for i, p in enumerate(chosen) if p is None), None)
            if free is None and len(chosen) < limit:
                chosen.append(pid)
                continue
            if free is None:
                # the slot of the process wanted least (not wanted at all first), never one asked for
                candidates = [i for i, p in enumerate(chosen) if p not in must]
                if not candidates:
                    break
                free = max(candidates, key=lambda i: rank.get(chosen[i], len(rank)))  # type: ignore[arg-type]
                if rank.get(chosen[free], len(rank)) <= rank[pid]:  # type: ignore[arg-type]
                    break  # every slot holds a process wanted more
            chosen[free] = pid
        # a slot whose process died and that no one took keeps its dead pid (DAMON skips an
        # invalid target): closing the gap would move every later process to another slot, and
        # a process that changes slots starts over with fresh regions and ages
        before: list[int | None] = [*self.targets, *[None] * (len(chosen) - len(self.targets))]
        held = [p if p is not None else old for p, old in zip(chosen, before, strict=True)]
        while held and (held[-1] is None or not out.alive(held[-1])):
            held.pop()
        if not any(out.alive(p) for p in held if p is not None):
            return []
        return [p for p in held if p is not None][:limit]

    def _retarget(self, pids: list[int], now: float) -> None:
        assert self.kdamond is not None
        # one region per span: DAMON's region bounds hold for all its targets together, and it
        # stops splitting regions past half of MAX_REGIONS, so ten pieces for each of a dozen
        # processes left a region over hot and cold memory unsplit (a lab run moved 79% of a
        # cold range up to DRAM with it)
        fresh = {slot: first for slot, pid in enumerate(pids)
                 if (slot >= len(self.targets) or self.targets[slot] != pid)
                 and (first := damon.initial_regions(pagemap.mappings(pid), pieces=1,
                                                     page=pagemap.PAGE_SIZE))}
        try:
            self.kdamond.set_targets(pids, fresh)
        except damon.DamonUnavailable as exc:
            self.reasons = str(exc)
            return
        gone = set(self.targets) - set(pids)
        for pid in gone:
            self.written.pop(pid, None)
            self.samples.pop(pid, None)
        for pid in gone | {pids[slot] for slot in fresh}:
            self.quiet_of.pop(pid, None)  # its regions start over: nothing carries
        self.targets, self.retargeted = pids, now
        self.current = None
        self._targets_started(pids)
        self._drop(lambda pid: pid in gone)

    def _drop(self, which: Callable[[int], bool]) -> None:
        for raw_key, _value in table_items(self.regions_table, _VALUE.size):
            pid = _KEY.unpack(raw_key)[0]
            if which(pid):
                with contextlib.suppress(KeyError):
                    del self.regions_table[self.regions_table.Key.from_buffer_copy(raw_key)]

    # ---- the interval ----

    def collect(self, out: SnapshotBuilder) -> None:
        now = time.monotonic()
        vaddr = self.method == "damon-vaddr"
        if vaddr:
            assert self.kdamond is not None
            if self.targets and self.kdamond.state() != "on":  # every target exited: DAMON stopped
                self.kdamond.running = False
                self.targets = []
            chosen = self._choose(out, now)
            if chosen != self.targets:
                self._retarget(chosen, now)
        if self.kdamond is not None:
            self.intervals = self.kdamond.intervals()
        elif self.method == "damon-paddr-passive":
            self._follow_passive()
        aggr_ns = self.intervals.aggr_us * 1000
        reports = self.bpf["damon_reports"][ctypes.c_int(0)].value
        if reports == self.reports and self.current is not None:
            current = self.current  # no aggregation since the last read: the same regions
        else:
            seen = parse(table_items(self.regions_table, _VALUE.size))
            current, stale, self.remember = fold(seen, self.remember, aggr_ns)
            self._carry_quiet(current)
            for region in stale:
                with contextlib.suppress(KeyError):
                    del self.regions_table[self.regions_table.Key(region.pid, 0, region.start)]
            self.reports, self.current = reports, current
        out.access = self.info()
        if not current:
            waiting = f"no aggregation reported yet (one every {self.intervals.aggr_us / 1e6:g} s)"
            out.access.reason = "; ".join(filter(None, [out.access.reason, waiting]))
            return
        if vaddr:
            self._per_process(current, out, now)
        else:
            self._physical(current, out)

    def info(self) -> AccessInfo:
        samples = self.intervals.samples_per_aggregation
        written = None
        if self.method == "damon-vaddr":
            written = "soft-dirty" if self.soft_dirty else "write-faults"
        return AccessInfo(
            method=self.method or "none",
            scope=("per process" if self.method == "damon-vaddr"
                   else "host-wide: physical memory per node, no per-process attribution"),
            reason=self.reasons,
            sample_us=self.intervals.sample_us,
            aggr_us=self.intervals.aggr_us,
            hot_min_accesses=metrics.hot_min_accesses(samples),
            cold_min_age_s=metrics.COLD_AGE_S,
            kdamond_pid=self.thread,
            kdamond_owner="llamas" if self.kdamond is not None else "other",
            targets=len(self.targets) if self.method == "damon-vaddr" else 0,
            written_method=written,
            written_period_s=metrics.SOFT_DIRTY_PERIOD_S if written == "soft-dirty" else None,
        )

    def _carry_quiet(self, current: list[Folded]) -> None:
        by_pid: dict[int, list[Folded]] = {}
        for region in current:
            by_pid.setdefault(region.pid, []).append(region)
        aggr_s = self.intervals.aggr_us / 1e6
        for pid, regions in by_pid.items():
            before, last_read_s = self.quiet_of.get(pid, ([], None))
            ended = max(r.seen_ns for r in regions) / 1e9
            if last_read_s is not None:
                ended = max(ended, last_read_s)
            hot_min = metrics.hot_min_accesses(self.intervals.samples_per_aggregation)
            self.quiet_of[pid] = (quiet(before, regions, last_read_s, aggr_s, hot_min), ended)
        for pid in set(self.quiet_of) - set(by_pid):
            del self.quiet_of[pid]  # no longer watched
        self._quiet_ends = {pid: ends for pid, ends in self._quiet_ends.items() if pid in self.quiet_of}

    def _classify(self, region: Folded, start: int, end: int) -> list[tuple[int, int, Heat, float]]:
        """[start, end) of a region, with its heat and age, cut where its parts have been quiet
        for different times (quiet): age is the longer of DAMON's and that."""
        damon_age_s = region.age * self.intervals.aggr_us / 1e6
        samples = self.intervals.samples_per_aggregation
        known = self.quiet_of.get(region.pid)
        if region.accesses > 0 or known is None:
            return [(start, end, metrics.heat(region.accesses, damon_age_s, samples), damon_age_s)]
        pieces = []
        ends = self._quiet_ends.get(region.pid)
        if ends is None or ends[0] is not known[0]:  # computed once per process and read
            ends = self._quiet_ends[region.pid] = (known[0], [q.end for q in known[0]])
        for lo, hi, quiet_s in quiet_age(known[0], start, end, known[1], ends[1]):
            age_s = max(damon_age_s, quiet_s or 0.0)
            pieces.append((lo, hi, metrics.heat(region.accesses, age_s, samples), age_s))
        return pieces

    def _physical(self, current: list[Folded], out: SnapshotBuilder) -> None:
        if self.heat_of is not None and self.heat_of[0] is current:
            out.node_heat = {node: dict(row) for node, row in self.heat_of[1].items()}
            return
        aggr_us = self.intervals.aggr_us
        for region in current:
            if region.accesses == 0 and region.age * aggr_us / 1e6 >= metrics.COLD_AGE_S:  # as _classify
                # cold by DAMON's age alone, and the quiet ranges in it only ever add age: cold
                # whole, with no cut (most of a host's regions, most of the time)
                pieces: Iterable[tuple[int, int, Heat, float]] = ((region.start, region.end, "cold", 0.0),)
            else:
                pieces = self._classify(region, region.start, region.end)
            for start, end, heat, _age in pieces:
                for node, size in physical_by_node(start, end, self.options.pfn_ranges).items():
                    row = out.node_heat.setdefault(node, {"hot": 0, "warm": 0, "cold": 0})
                    row[heat] += size
        self.heat_of = (current, {node: dict(row) for node, row in out.node_heat.items()})

    def regions(self, pid: int) -> list[AccessRegion] | None:
        """Every region of a watched process at the last collect, each cut at its mappings, with
        its heat, age, placement and written fraction (the snapshot keeps only the largest)."""
        return self.regions_of.get(pid)

    def _per_process(self, current: list[Folded], out: SnapshotBuilder, now: float) -> None:
        regions_of: dict[int, list[AccessRegion]] = {}
        by_pid: dict[int, list[Folded]] = {}
        for region in current:
            if region.pid in self.targets:
                by_pid.setdefault(region.pid, []).append(region)
        # each region cut at the process's mappings: one VMA's pages are read, written and placed
        # alike far more often than two neighbours' are, and numa_maps counts per VMA
        cut: dict[int, list[tuple[Folded, int, int, tuple[int, int]]]] = {}
        for pid, regions in by_pid.items():
            vmas = pagemap.mappings(pid)
            cut[pid] = [(r, *piece) for r in regions for piece in pagemap.pieces(r.start, r.end, vmas)]
        span = sum(vma[1] - vma[0] for parts in cut.values() for vma in {p[3] for p in parts}) or 1
        budget = metrics.PAGEMAP_PAGES
        for pid, parts in cut.items():
            state = self.written.get(pid)
            if state is None and self.soft_dirty:
                state = self._clear(pid, now)
            window = now - state.cleared_at if state is not None else None
            clear_due = window is not None and window >= metrics.SOFT_DIRTY_PERIOD_S
            cached = self.samples.get(pid)
            rescan = cached is None or now - cached[0] >= metrics.PLACEMENT_PERIOD_S or clear_due
            if rescan or cached is None:
                fresh = window is not None and window >= metrics.SOFT_DIRTY_MIN_S
                cached = (now, fresh, {})
            sampled = cached[2]
            rows: list[AccessRegion] = []
            try:
                reader = pagemap.Pagemap(pid)
            except OSError:
                continue  # gone
            with reader:
                for region, start, end, vma in parts:
                    sample = sampled.get(vma)
                    if sample is None:  # every mapping once per PLACEMENT_PERIOD_S (and new ones)
                        share = max(pagemap.CHUNK, int(budget * (vma[1] - vma[0]) / span))
                        try:
                            sample = sampled[vma] = reader.sample(vma[0], vma[1], self.node_of, share)
                        except OSError:
                            break
                    for lo, hi, heat, age_s in self._classify(region, start, end):
                        placed = sample.placement(lo, hi)
                        fraction = placed.written_fraction if cached[1] else None
                        if fraction is None and state is not None and not cached[1]:
                            fraction = _lookup(state.last, lo)
                        rows.append(AccessRegion(lo, hi, round(region.accesses, 3),
                                                 round(age_s, 3), heat, placed.bytes_by_node(),
                                                 None if fraction is None else round(fraction, 4)))
            self.samples[pid] = cached
            fresh = cached[1]
            if state is not None and fresh and rescan:
                state.window_s = round(window, 3) if window is not None else None
                state.last = [(r.start, r.end, r.written_fraction) for r in rows
                              if r.written_fraction is not None]
                if window is not None and window >= metrics.SOFT_DIRTY_PERIOD_S:
                    self._clear(pid, now, keep=state)
            if not self.soft_dirty:
                _write_faults(rows, out.process(pid).regions)
            regions_of[pid] = rows
            access = totals(rows)
            largest = sorted(merge(rows), key=lambda r: -sum(r.bytes_by_node.values()))
            kept = largest[: metrics.ACCESS_REGIONS_KEPT]
            access.regions = sorted(kept, key=lambda r: r.start)
            access.written_window_s = state.window_s if state is not None else None
            out.process(pid).access = access
            for heat_name, by_node in (("hot", access.hot_bytes_by_node), ("warm", access.warm_bytes_by_node),
                                       ("cold", access.cold_bytes_by_node)):
                for node, size in by_node.items():
                    row = out.node_heat.setdefault(node, {"hot": 0, "warm": 0, "cold": 0})
                    row[heat_name] += size
        self.regions_of = regions_of

    def _clear(self, pid: int, now: float, keep: Written | None = None) -> Written | None:
        try:
            pagemap.clear_soft_dirty(pid)
        except OSError:
            return None
        state = keep or Written(cleared_at=now)
        state.cleared_at = now
        self.written[pid] = state
        return state

    def collect_with_health(self, out: SnapshotBuilder) -> tuple[int, int, int]:
        before = self._health()
        self.collect(out)
        full, drops = before
        prev_full, prev_drops = self._health_prev
        self._health_prev = before
        return max(full - prev_full, 0), max(drops - prev_drops, 0), 0

    def _health(self) -> tuple[int, int]:
        table = self.bpf[self.health_map]
        return sum(table[ctypes.c_int(HEALTH_REGION_FULL)]), sum(table[ctypes.c_int(HEALTH_DROPS)])

    def close(self) -> None:
        if getattr(self, "kdamond", None) is not None:
            assert self.kdamond is not None
            self.kdamond.stop()
            self.kdamond = None
        super().close()


def _lookup(last: list[tuple[int, int, float]], address: int) -> float | None:
    for start, end, fraction in last:
        if start <= address < end:
            return fraction
    return None


def _write_faults(rows: list[AccessRegion], fault_regions: Sequence[Region]) -> None:
    """Without soft-dirty: each region's share of write faults among its faults (2 MiB regions,
    counted by the faults probe for the processes it filters on), where there are any."""
    size = 1 << 21
    for row in rows:
        reads = writes = 0
        for counted in fault_regions:
            if row.start < counted.start + size and counted.start < row.end:
                reads += counted.reads
                writes += counted.writes
        if reads + writes:
            row.written_fraction = round(metrics.write_fraction(reads, writes), 4)
