"""Where a process's pages are and which were written: /proc/PID/pagemap and clear_refs.

pagemap holds one little-endian u64 per virtual page (Documentation/admin-guide/mm/pagemap.rst):
bit 63 present, bit 62 swapped, bit 56 mapped by this process alone, bit 55 soft-dirty, bits 0-54
the page frame number (zero unless the reader has CAP_SYS_ADMIN). A PFN is mapped to its node
through the node ranges of /proc/zoneinfo (kernel/nodes.pfn_ranges), the same ranges the
numa_alloc probe uses.

Writing 4 to /proc/PID/clear_refs clears the soft-dirty bits and write-protects the process's
pages, so the first write to each page afterwards takes a fault that sets the bit again
(CONFIG_MEM_SOFT_DIRTY). That fault is the cost of knowing what is written: one per page written
per period, which `SOFT_DIRTY_PERIOD_S` bounds.
"""

from __future__ import annotations

import array
import bisect
import os
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llamas_ebpf.kernel.nodes import PfnRange

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PRESENT = 1 << 63
SWAPPED = 1 << 62
EXCLUSIVE = 1 << 56
SOFT_DIRTY = 1 << 55
PFN_MASK = (1 << 55) - 1
ENTRY = 8
CHUNK = 64  # pages read together when a range is sampled (256 KiB of address space)
MAX_READ = 65536  # entries in one read (512 KiB)


@dataclass
class Placement:
    """What a scan of one virtual range found, from the pages it read."""

    pages_read: int = 0  # entries read: all of the range, or evenly spaced chunks of it
    scale: float = 1.0  # pages of the range per page read
    present: int = 0
    by_node: dict[int, int] = field(default_factory=dict)  # present pages per node (sampled)
    soft_dirty: int = 0  # present pages with the soft-dirty bit
    unknown_node: int = 0  # present, but the PFN is hidden (not root) or in no node range

    def bytes_by_node(self) -> dict[int, int]:
        """Resident bytes per node, scaled up by the stride of the sample."""
        return {node: round(pages * self.scale) * PAGE_SIZE for node, pages in self.by_node.items()}

    @property
    def written_fraction(self) -> float | None:
        return self.soft_dirty / self.present if self.present else None


class NodeOfPfn:
    """PFN -> node, by binary search over the sorted node ranges."""

    def __init__(self, ranges: Sequence[PfnRange]) -> None:
        self.ranges = sorted(ranges, key=lambda r: r.start)
        self.starts = [r.start for r in self.ranges]

    def range_of(self, pfn: int) -> PfnRange | None:
        index = bisect.bisect_right(self.starts, pfn) - 1
        if index >= 0 and pfn < self.ranges[index].end:
            return self.ranges[index]
        return None

    def __call__(self, pfn: int) -> int | None:
        found = self.range_of(pfn)
        return found.node if found is not None else None


def decode(raw: bytes, node_of: NodeOfPfn, out: Placement) -> None:
    """Fold pagemap entries (raw, a multiple of 8 bytes, in this machine's byte order, as the
    kernel writes them) into `out`. Per entry: one comparison for a page not present, and the
    node range of the page before is tried first (neighbours are mostly on one node)."""
    entries = array.array("Q")
    entries.frombytes(raw)
    out.pages_read += len(entries)
    by_node = out.by_node
    low = high = -1
    node = -1
    present = dirty = unknown = 0
    for entry in entries:
        if entry < PRESENT:  # bit 63 clear
            continue
        present += 1
        if entry & SOFT_DIRTY:
            dirty += 1
        pfn = entry & PFN_MASK
        if not low <= pfn < high:
            found = node_of.range_of(pfn) if pfn else None
            if found is None:
                unknown += 1
                continue
            low, high, node = found.start, found.end, found.node
        by_node[node] = by_node.get(node, 0) + 1
    out.present += present
    out.soft_dirty += dirty
    out.unknown_node += unknown


@dataclass
class Sample:
    """A mapping's pages as one scan read them: CHUNK-page chunks (all of them, or chunks spaced
    evenly), each folded on its own, so any range inside can be placed later without reading
    again (DAMON's regions move every aggregation; the pages do not)."""

    starts: list[int] = field(default_factory=list)  # each chunk's first address, ascending
    chunks: list[Placement] = field(default_factory=list)
    scale: float = 1.0  # pages of the mapping per page read

    def placement(self, start: int, end: int) -> Placement:
        """[start, end): the chunks that begin inside it, scaled; a range smaller than the
        spacing of the chunks takes the density of the chunk nearest to it."""
        low = bisect.bisect_left(self.starts, start)
        high = bisect.bisect_left(self.starts, end)
        out = Placement()
        picked = self.chunks[low:high]
        pages = max((end - start) // PAGE_SIZE, 1)
        if not picked and self.chunks:
            picked = [self.chunks[min(max(low - 1, 0), len(self.chunks) - 1)]]
        for chunk in picked:
            out.pages_read += chunk.pages_read
            out.present += chunk.present
            out.soft_dirty += chunk.soft_dirty
            out.unknown_node += chunk.unknown_node
            for node, count in chunk.by_node.items():
                out.by_node[node] = out.by_node.get(node, 0) + count
        out.scale = pages / out.pages_read if out.pages_read else 1.0
        return out


# an entry's top byte (bits 56-63) -> 1 where the page is present (63) and another process maps
# it too (56 clear), and -> 1 where it is present: bytes.translate over the top bytes of a read
# answers for every entry at C speed, not entry by entry in Python
_TOP = 7 if sys.byteorder == "little" else 0
_SHARED_TOP = bytes(1 if top & 0x81 == 0x80 else 0 for top in range(256))
_PRESENT_TOP = bytes(top >> 7 for top in range(256))


class Pagemap:
    """One process's pagemap, open for sampling its mappings."""

    def __init__(self, pid: int, proc: Path = Path("/proc")) -> None:
        self.fd = os.open(proc / str(pid) / "pagemap", os.O_RDONLY | os.O_CLOEXEC)

    def sample(self, start: int, end: int, node_of: NodeOfPfn, max_pages: int) -> Sample:
        """[start, end) as CHUNK-page chunks: whole when it fits in `max_pages`, else evenly
        spaced chunks (one read each)."""
        first, last = start // PAGE_SIZE, (end + PAGE_SIZE - 1) // PAGE_SIZE
        pages = max(last - first, 0)
        out = Sample()
        if pages <= max_pages:
            for read_at in range(first, last, MAX_READ):
                count = min(MAX_READ, last - read_at)
                raw = os.pread(self.fd, count * ENTRY, read_at * ENTRY)
                for offset in range(0, len(raw), CHUNK * ENTRY):
                    chunk = Placement()
                    decode(raw[offset:offset + CHUNK * ENTRY], node_of, chunk)
                    out.starts.append((read_at + offset // ENTRY) * PAGE_SIZE)
                    out.chunks.append(chunk)
        else:
            count = max(1, max_pages // CHUNK)
            step = pages / count
            for i in range(count):
                page = first + int(i * step)
                chunk = Placement()
                decode(os.pread(self.fd, min(CHUNK, last - page) * ENTRY, page * ENTRY), node_of, chunk)
                out.starts.append(page * PAGE_SIZE)
                out.chunks.append(chunk)
        read = sum(c.pages_read for c in out.chunks)
        out.scale = pages / read if read else 1.0
        return out

    def shared(self, runs: Sequence[tuple[int, int]]) -> int:
        """Of the pages in `runs` (first address, pages), those present and mapped by another
        process too (bit 56 clear): what migrate_pages(2) and move_pages(2) leave where it is
        unless told to move it for every process (MPOL_MF_MOVE_ALL). What was counted before a
        read failed, where the process exits part way."""
        shared = 0
        for first, count in runs:
            page = first // PAGE_SIZE
            for read_at in range(page, page + count, MAX_READ):
                try:
                    raw = os.pread(self.fd, min(MAX_READ, page + count - read_at) * ENTRY, read_at * ENTRY)
                except OSError:
                    return shared
                shared += raw[_TOP::ENTRY].translate(_SHARED_TOP).count(1)
        return shared

    def present_runs(self, start: int, end: int, max_run: int) -> tuple[list[tuple[int, int]], int]:
        """[start, end)'s present pages as runs (first address, pages; none longer than
        `max_run`), and how many of them another process maps too (bit 56 clear). Found over
        each entry's top byte with bytes.translate and bytes.find, not entry by entry."""
        runs: list[tuple[int, int]] = []
        shared = 0
        first, last = start // PAGE_SIZE, end // PAGE_SIZE
        for read_at in range(first, last, MAX_READ):
            raw = os.pread(self.fd, min(MAX_READ, last - read_at) * ENTRY, read_at * ENTRY)
            top = raw[_TOP::ENTRY]
            shared += top.translate(_SHARED_TOP).count(1)
            present = top.translate(_PRESENT_TOP)
            begin = present.find(1)
            while begin >= 0:
                finish = present.find(0, begin)
                finish = len(present) if finish < 0 else finish
                for at in range(begin, finish, max_run):
                    runs.append(((read_at + at) * PAGE_SIZE, min(max_run, finish - at)))
                begin = present.find(1, finish)
        return runs, shared

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Pagemap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shared_pages(pid: int, runs: Sequence[tuple[int, int]], proc: Path = Path("/proc")) -> int:
    """Pagemap.shared for a process not open yet: 0 for a process that has exited."""
    try:
        reader = Pagemap(pid, proc)
    except OSError:
        return 0
    with reader:
        return reader.shared(runs)


def mappings(pid: int, proc: Path = Path("/proc")) -> list[tuple[int, int]]:
    """A process's mappings (VMAs) as (start, end), in address order, the vsyscall page aside."""
    out = []
    try:
        with open(proc / str(pid) / "maps") as maps:
            for line in maps:
                first, _, last = line.split(" ", 1)[0].partition("-")
                begin, finish = int(first, 16), int(last, 16)
                if begin < 0xFFFF_FFFF_FF60_0000:
                    out.append((begin, finish))
    except (OSError, ValueError):
        return []
    return out


def pieces(start: int, end: int, vmas: list[tuple[int, int]]) -> list[tuple[int, int, tuple[int, int]]]:
    """[start, end) cut at the mappings' bounds, the unmapped gaps left out: (start, end, the
    mapping) for each piece."""
    index = max(bisect.bisect_right(vmas, (start, 1 << 64)) - 1, 0)
    out = []
    for vma in vmas[index:]:
        if vma[0] >= end:
            break
        a, b = max(start, vma[0]), min(end, vma[1])
        if b > a:
            out.append((a, b, vma))
    return out


def clear_soft_dirty(pid: int, proc: Path = Path("/proc")) -> None:
    """Clear the soft-dirty bits of a process's pages (raises OSError where it cannot)."""
    with open(proc / str(pid) / "clear_refs", "w") as out:
        out.write("4")


def soft_dirty_supported(proc: Path = Path("/proc")) -> tuple[bool, str]:
    """Whether soft-dirty tracking works here, tried on this process: clear, write one page,
    and read its bit back (the kernel has no other way to say it)."""
    import mmap

    try:
        area = mmap.mmap(-1, PAGE_SIZE)
    except OSError as exc:
        return False, f"mmap: {exc.strerror}"
    try:
        area[0:1] = b"x"
        address = _address(area)
        clear_soft_dirty(os.getpid(), proc)
        area[0:1] = b"y"
        with Pagemap(os.getpid(), proc) as pm:
            (entry,) = struct.unpack("<Q", os.pread(pm.fd, ENTRY, address // PAGE_SIZE * ENTRY))
    except OSError as exc:
        return False, f"/proc/PID/clear_refs: {exc.strerror}"
    finally:
        area.close()
    if entry & SOFT_DIRTY:
        return True, ""
    return False, "soft-dirty bits are not kept by this kernel (CONFIG_MEM_SOFT_DIRTY off)"


def _address(area: object) -> int:
    import ctypes

    buffer = (ctypes.c_char * 1).from_buffer(area)  # type: ignore[arg-type]
    try:
        return ctypes.addressof(buffer)
    finally:
        del buffer
