"""Placement metrics, each defined once, and the thresholds they are judged by.

The heuristic advisor, the audit's findings, the run loop's revert check and `llamas top` all
call these, so they cannot disagree about the same window. Counts come from the Snapshot (per
interval) or from a WindowSummary (per decision window); the functions take plain numbers so
both can use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

# ---- thresholds ----
BUSY_EVENTS = 512  # faults + allocations + hinting faults in a window: enough to act or report on
BUSY_GPU_CALLS = 100  # CUDA calls in a window: busy on a GPU
FRACTION_EVENTS = 256  # allocations + hinting faults a traffic fraction needs to be trusted
REMOTE_ENTER = 0.30  # remote fraction that makes a rule and a finding
WRITE_HEAVY = 0.30  # write fraction of a writer
READ_MOSTLY = 0.10  # write fraction of a reader
MAJORITY = 0.50  # share of the pages that makes a node "where its memory is"
BIG_PAGES = 65536  # resident pages (256 MiB) that make a process big enough to tier
CROSS_NODE_MOVES_PER_S = 1.0  # cross-node CPU migrations a second worth a finding

# ---- restraint: what a placement rule needs besides a reason ----
BUSY_HOT_BYTES = 16 << 20  # hot bytes that make a process busy by access alone (it may take no faults)
BUSY_INTERVAL_EVENTS = 64  # faults + allocations + hinting faults that make one interval busy
MIN_BUSY_INTERVALS = 3  # intervals of the window it was busy in, at least (a start-up burst is one)
MIN_RULE_AGE_S = 5.0  # seconds a process has run, at least, before a rule is written for it (start-up churn)
MIN_GAIN_BYTES = 16 << 20  # hot bytes a rule would make local (or cold bytes it would demote), at least

# ---- a material change: what makes a costly advisor (the LLM) worth asking again ----
CHANGE_PROCESSES = 32  # the busiest processes whose facts count
CHANGE_QUIET_FACTOR = 4  # a busy process counts as gone below a quarter of what made it busy
CHANGE_REMOTE_STEP = 0.25  # a remote fraction counts in steps of this (0-25%, 25-50%, ...)
CHANGE_BYTES_FACTOR = 2.0  # hot bytes on a node count in factors of this, from MIN_GAIN_BYTES up

# ---- sensing: what a snapshot keeps ----
# processes kept by each measure (faults, pages allocated, remote allocations, remote hinting
# faults, cross-node CPU moves): the busiest KEEP_TOP of each, with the asked-about ones; the
# rest are summed (Snapshot.others), so a snapshot is as long with 5,000 busy processes as
# with 100, and a collect makes no record for most of them
KEEP_TOP = 32

# ---- access (the access probe, DAMON) ----
HOT_ACCESS_RATIO = 0.10  # of the samples of an aggregation that saw an access, at least: hot
COLD_AGE_S = 3.0  # no access seen for at least this long: cold (else warm); a placement decision asks more
ACCESS_REGIONS_KEPT = 24  # regions per process a snapshot keeps (the largest, neighbours merged)
PAGEMAP_PAGES = 32_768  # pagemap entries read per interval, all processes (256 KiB; larger ranges sampled)
PLACEMENT_PERIOD_S = 5.0  # a region's placement is read again at most this often (pages move slowly)
MOVE_HOT_SHARE = 0.75  # a hot region moves home at this share of its process's hottest region's accesses
# a process whose judgement waited on DAMON (no regions yet, a hot region held back below
# MOVE_HOT_SHARE) is judged again this soon: DAMON's next aggregation
RECHECK_S = 1.0
PLACEMENT_WAIT_S = 15.0  # a taken process waits this long for its first DAMON regions, then goes by mapping
SOFT_DIRTY_PERIOD_S = 10.0  # a process's soft-dirty bits are cleared at most this often
SOFT_DIRTY_MIN_S = 2.0  # a written fraction covers at least this long
# where a home node is short of room, placement waits this long at most for the written fraction
# (soft-dirty's first window, then the next placement read) before it moves memory of unknown writes
WRITES_WAIT_S = SOFT_DIRTY_PERIOD_S + PLACEMENT_PERIOD_S


def hot_min_accesses(samples_per_aggregation: int) -> float:
    """The accesses per aggregation that make a region hot, at these intervals (at least 1)."""
    return max(1.0, HOT_ACCESS_RATIO * samples_per_aggregation)


def heat(accesses: float, age_s: float, samples_per_aggregation: int) -> Literal["hot", "warm", "cold"]:
    """hot, warm or cold, from DAMON's accesses per aggregation and the region's age."""
    if accesses >= hot_min_accesses(samples_per_aggregation):
        return "hot"
    if accesses == 0 and age_s >= COLD_AGE_S:
        return "cold"
    return "warm"


def busy_interval(events: int, hot_bytes: int) -> bool:
    """Whether one interval of a process counts as busy: events, or memory in use."""
    return events >= BUSY_INTERVAL_EVENTS or hot_bytes >= BUSY_HOT_BYTES


def fraction(part: int, whole: int) -> float:
    """part / whole, 0.0 for an empty whole."""
    return part / whole if whole else 0.0


def remote_alloc_fraction(alloc_local: int, alloc_remote: int) -> float:
    """Pages allocated off the node of the CPU that asked, among all it allocated."""
    return fraction(alloc_remote, alloc_local + alloc_remote)


def remote_hint_fraction(hint_local: int, hint_remote: int) -> float:
    """NUMA hinting faults on memory of another node, among all hinting faults."""
    return fraction(hint_remote, hint_local + hint_remote)


def traffic(alloc_local: int, alloc_remote: int, hint_local: int, hint_remote: int) -> tuple[int, int]:
    """(remote, total) of the allocations and hinting faults together."""
    return alloc_remote + hint_remote, alloc_local + alloc_remote + hint_local + hint_remote


def off_node_fraction(resident_by_node: Mapping[int, int], cpu_node: int | None) -> float | None:
    """The share of the resident pages on other nodes than the CPU's: where the memory is, not
    how it got there (with NUMA balancing off nothing else tells that a process reads memory far
    away). None when the CPU's node or the pages are unknown."""
    total = sum(resident_by_node.values())
    if cpu_node is None or not total:
        return None
    return 1.0 - resident_by_node.get(cpu_node, 0) / total


def write_fraction(reads: int, writes: int) -> float:
    return fraction(writes, reads + writes)


def judged_remote_fraction(alloc_local: int, alloc_remote: int, hint_local: int, hint_remote: int,
                           resident_by_node: Mapping[int, int], cpu_node: int | None) -> float | None:
    """What the revert check compares before and after a generation: the remote fraction of the
    traffic when there were at least FRACTION_EVENTS events, else the off-node share of the
    resident pages, which needs no traffic at all."""
    remote, total = traffic(alloc_local, alloc_remote, hint_local, hint_remote)
    if total >= FRACTION_EVENTS:
        return remote / total
    return off_node_fraction(resident_by_node, cpu_node)


def majority(counts: Mapping[int, int]) -> tuple[int | None, float]:
    """The node holding most of the pages, and its share (ties: the lowest node id)."""
    total = sum(counts.values())
    if not total:
        return None, 0.0
    node = max(sorted(counts), key=lambda n: counts[n])
    return node, counts[node] / total


# ---- device thresholds (the inventory's nodes) ----
WRITE_SLOW_RATIO = 2.0  # writes this many times slower than reads (latency or bandwidth): write-slow
READS_NEAR_DRAM = 1.5  # read latency within this factor of the fastest DRAM: reads nearly as fast
