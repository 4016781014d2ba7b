"""Cold-mapping measurement (`demote_node`) under the lab's emulated MMU, where a TLB entry lives
until something flushes it: a mapping read in a loop must read as referenced in every window.

This is the case /proc/PID/clear_refs got wrong: it clears accessed bits without a TLB flush, so
a page that stays in the TLB never gets its bit set again and a busy mapping looked idle (3 of 8
windows here, and the demote test in CI moved a busy mapping to node2)."""

from __future__ import annotations

import os
import time

from llamas_ebpf.actuator.cold import ColdTracker


def _overlaps(ranges: list[tuple[int, int]], start: int, length: int) -> int:
    return sum(min(end, start + length) - max(begin, start) for begin, end in ranges
               if begin < start + length and end > start)


def test_a_busy_mapping_reads_referenced_in_every_window(spawn):
    pages, windows = 3000, 8
    child = spawn("--physcpubind=0")  # alone on CPU 0: no other process flushes its TLB
    idle, busy = child.touch("write", pages), child.touch("write", pages)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    try:
        tracker, seen = ColdTracker(), []
        for _ in range(windows):
            assert tracker.mark(child.pid)
            started = time.monotonic()
            while time.monotonic() - started < 2.0:
                child.command("spinlast 1")  # reads the busy mapping, at least once a second
            cold = tracker.cold_ranges(child.pid)
            seen.append((_overlaps(cold, idle, pages * 4096) // 4096, _overlaps(cold, busy, pages * 4096) // 4096))
    finally:
        os.sched_setaffinity(0, before)
    assert tracker.use_madvise
    assert all(idle_cold == pages and busy_cold == 0 for idle_cold, busy_cold in seen), seen
