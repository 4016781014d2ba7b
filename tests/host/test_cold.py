"""Cold mappings for `demote_node`, read from this kernel's accessed bits (process_madvise(MADV_COLD),
smaps)."""

from __future__ import annotations

import os
import time

from llamas_ebpf.actuator.cold import ColdTracker


def _covers(ranges: list[tuple[int, int]], start: int, length: int) -> bool:
    covered = sum(min(end, start + length) - max(begin, start) for begin, end in ranges
                  if begin < start + length and end > start)
    return covered == length


def test_idle_mapping_is_cold_and_busy_one_is_not(toucher):
    pages = 512
    # One CPU for the touches: MADV_COLD skips a page still in a CPU's batch of new pages, not
    # yet on the LRU, and a batch is flushed by the CPU's next new pages. Pinned, the 512 busy
    # pages flush the idle ones; a toucher that changed CPUs between the two could leave a few
    # idle pages young on the first CPU (seen once in a full host run).
    os.sched_setaffinity(toucher.pid, {min(os.sched_getaffinity(0))})
    idle = toucher.touch("write", pages)
    busy = toucher.touch("write", pages)
    tracker = ColdTracker()
    assert tracker.mark(toucher.pid)
    assert not tracker.due(toucher.pid, 1.0)
    toucher.command("spinlast 1")  # re-reads the busy mapping only (up to a second)
    time.sleep(1.0)
    assert tracker.due(toucher.pid, 1.0)
    cold = tracker.cold_ranges(toucher.pid)
    assert _covers(cold, idle, pages * 4096), [(hex(a), hex(b)) for a, b in cold]
    assert not any(begin < busy + pages * 4096 and end > busy for begin, end in cold)
    # both go warm again once read, after a new mark
    assert tracker.mark(toucher.pid)
    toucher.command("spin 1")
    cold = tracker.cold_ranges(toucher.pid)
    assert not any(begin < idle + pages * 4096 and end > idle for begin, end in cold)
    assert tracker.use_madvise  # this kernel has process_madvise: no fallback to clear_refs


def test_a_process_that_exited_is_forgotten(toucher):
    tracker = ColdTracker()
    pid = toucher.pid
    toucher.close()
    assert not tracker.mark(pid)
    assert pid not in tracker.marked and tracker.cold_ranges(pid) == []
    assert tracker.use_madvise  # one process gone says nothing about the kernel
