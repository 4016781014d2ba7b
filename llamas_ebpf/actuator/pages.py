"""Page placement: move_pages(2) in batches of at most ~20 ms, asking first and moving only the
pages that are not already on the target node, within the rule's and the host's MB/s budgets.

Every page is journalled with the node it came from before it is moved (one fsynced line per
move_pages call, written ahead of the call), so that rollback can put it back whenever the
mover was stopped. A process that exits mid-way ends its work quietly (ESRCH).
"""

from __future__ import annotations

import array
import bisect
import errno
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamas_ebpf.failpoints import failpoint
from llamas_ebpf.kernel import mempolicy, nodes, pagemap, procfs
from llamas_ebpf.metrics import MOVE_HOT_SHARE, READ_MOSTLY, WRITE_HEAVY
from llamas_ebpf.policy.lock import append_line, write_atomically
from llamas_ebpf.snapshot import AccessRegion

PAGE = 4096
REGION = 2 << 20
TARGET_BATCH_S = 0.020


class TokenBucket:
    """A budget in bytes per second, with one second's worth of burst."""

    def __init__(self, mbps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = mbps * 1e6
        self.tokens = self.rate
        self.clock = clock
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def available(self) -> float:
        self._refill()
        return self.tokens

    def take(self, nbytes: float) -> None:
        self._refill()
        self.tokens -= nbytes


@dataclass
class MoveResult:
    asked: int = 0  # resident pages looked at
    already: int = 0  # already on the target
    moved: int = 0
    shared: int = 0  # not moved, by design: another process maps them too (libc's, shared memory)
    failed: int = 0
    gone: bool = False  # the process exited
    deferred: int = 0  # left for later: out of budget
    full: bool = False  # the target node had no memory left for them (ENOMEM)


MAX_RUN = 1 << 24  # pages in one journalled run, at most (64 GiB): a larger figure is damage


def _runs_in_bounds(runs: Sequence[Sequence[int]]) -> bool:
    return all(0 < count <= MAX_RUN for _first, count, _node in runs)


class PageJournal:
    """Pages moved, with the node each came from: JSON lines, fsynced per batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.damaged = 0  # lines the last read skipped

    def record(self, pid: int, moves: list[tuple[int, int]]) -> None:
        """One line for a batch: runs of consecutive pages that came from one node, as
        [first address, pages, node] (a whole-process move of 20,000 pages is a few runs)."""
        runs: list[list[int]] = []
        for address, node in moves:
            last = runs[-1] if runs else None
            if last is not None and last[2] == node and address == last[0] + last[1] * PAGE:
                last[1] += 1
            else:
                runs.append([address, 1, node])
        self.record_runs(pid, runs)

    def record_runs(self, pid: int, runs: Sequence[Sequence[int]]) -> None:
        """One line for runs [first address, pages, node] already found (none past MAX_RUN)."""
        if not _runs_in_bounds(runs):
            raise ValueError("a journalled run out of bounds")
        append_line(self.path, json.dumps({"pid": pid, "runs": [list(r) for r in runs]},
                                          separators=(",", ":")).encode())

    def _lines(self, expand: bool = True) -> list[tuple[str, dict[str, Any] | None]]:
        """Each line, with what it reads as (None: torn by a writer that died, or damaged); with
        expand=False, its runs are checked but not expanded into pages ("pages" is then [])."""
        if not self.path.exists():
            return []
        out: list[tuple[str, dict[str, Any] | None]] = []
        for line in self.path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if "runs" in entry:
                    runs = [(int(first), int(count), int(node)) for first, count, node in entry["runs"]]
                    if not _runs_in_bounds(runs):
                        raise ValueError("a run out of bounds")  # damaged: not expanded
                    moves = [(first + i * PAGE, node) for first, count, node in runs
                             for i in range(count)] if expand else []
                else:  # a journal written before runs: a pair per page
                    moves = [(int(address), int(node)) for address, node in entry["pages"]]
                out.append((line, {"pid": int(entry["pid"]), "pages": moves}))
            except (ValueError, KeyError, TypeError, RecursionError):
                out.append((line, None))
        return out

    def entries(self) -> dict[int, dict[int, int]]:
        """pid -> {address: original node} (the first node a page was seen on). A line that does
        not read back is skipped and counted in `damaged`: its pages stay where they are."""
        result: dict[int, dict[int, int]] = {}
        self.damaged = 0
        for _line, entry in self._lines():
            if entry is None:
                self.damaged += 1
                continue
            pages = result.setdefault(entry["pid"], {})
            for address, node in entry["pages"]:
                pages.setdefault(address, node)
        return result

    def pids(self) -> set[int]:
        """The processes with pages in the journal, read without expanding a page (the daemon
        asks once a window, with a journal that may hold millions)."""
        return {entry["pid"] for _line, entry in self._lines(expand=False) if entry is not None}

    def forget(self, pids: set[int]) -> None:
        """Drop these processes' pages from the journal (moved back, or gone); damaged lines stay."""
        if not self.path.exists():
            return
        kept = [line for line, entry in self._lines(expand=False)
                if entry is None or entry["pid"] not in pids]
        write_atomically(self.path, "".join(line + "\n" for line in kept))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def next_batch(batch: int, pages: int, elapsed: float) -> int:
    """Pages for the next move_pages call, after `pages` took `elapsed` seconds: aimed at ~90% of
    TARGET_BATCH_S, since each call pays a fixed cost (the kernel drains the LRU caches of every
    CPU first) and fewer, fuller calls move faster; at most doubling, between 16 and 65536."""
    if elapsed <= 0:
        return batch
    wanted = int(pages * 0.9 * TARGET_BATCH_S / elapsed)
    return max(16, min(wanted, 2 * batch, 65536))


class PageMover:
    def __init__(self, host_budget: TokenBucket, journal: PageJournal) -> None:
        self.host_budget = host_budget
        self.journal = journal
        self.batch = 256  # pages per move_pages call, tuned to stay near TARGET_BATCH_S
        self.calls = 0
        self.seconds = 0.0
        self.whole_calls = 0  # of them, migrate_pages(2) calls that moved a whole process

    def _call(self, pid: int, addresses: list[int], nodes: list[int]) -> list[int]:
        """One move_pages(2) that moves, timed: the batch size follows what it took."""
        started = time.monotonic()
        status = mempolicy.move_pages(pid, addresses, nodes)
        elapsed = time.monotonic() - started
        self.calls += 1
        self.seconds += elapsed
        self.batch = next_batch(self.batch, len(addresses), elapsed)
        return status

    def _where(self, pid: int, addresses: list[int], result: MoveResult) -> list[int] | None:
        """The node each page is on now; None, with result.gone, when the process has exited."""
        status = self._ask(pid, array.array("Q", addresses), result)
        return None if status is None else status.tolist()

    @staticmethod
    def _ask(pid: int, pages: array.array[int], result: MoveResult) -> array.array[int] | None:
        """_where on arrays ('Q' addresses in, 'i' statuses out)."""
        try:
            return mempolicy.move_pages_array(pid, pages, None)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                result.gone = True
                return None
            raise

    def move(self, pid: int, addresses: list[int], node: int, budget: TokenBucket) -> MoveResult:
        """Move the resident ones of `addresses` to `node`, as far as the budgets allow now."""
        result = MoveResult()
        where = self._where(pid, addresses, result)
        if where is None:
            return result
        todo: list[tuple[int, int]] = []  # (address, the node it is on)
        for address, on in zip(addresses, where, strict=True):
            if on < 0:
                continue  # not resident (or not movable): nothing to place
            result.asked += 1
            if on == node:
                result.already += 1
            else:
                todo.append((address, on))
        while todo:
            allowed = int(min(budget.available(), self.host_budget.available()) // PAGE)
            count = min(self.batch, len(todo), allowed)
            if count <= 0:
                result.deferred = len(todo)
                break
            chunk, todo = todo[:count], todo[count:]
            # written ahead, before the pages move: a crash or a signal mid-call then leaves
            # pages journalled that may not have moved (moving them back is a no-op), never
            # pages moved that nobody can put back
            self.journal.record(pid, chunk)
            try:
                status = self._call(pid, [a for a, _ in chunk], [node] * len(chunk))
            except OSError as exc:
                if exc.errno == errno.ESRCH:
                    result.gone = True
                    break
                if exc.errno == errno.ENOMEM:  # the node is full: what is left stays where it is
                    result.full = True
                    result.failed += len(chunk) + len(todo)
                    break
                raise
            failpoint("pages.moved-batch")
            if -errno.ENOMEM in status:
                result.full = True
            moved = [(a, src) for (a, src), s in zip(chunk, status, strict=True) if s == node]
            shared = status.count(-errno.EACCES)
            result.moved += len(moved)
            result.shared += shared
            result.failed += len(chunk) - len(moved) - shared
            budget.take(len(moved) * PAGE)
            self.host_budget.take(len(moved) * PAGE)
        return result

    @staticmethod
    def free_bytes(node: int) -> int:
        """What the node can take now without the kernel reclaiming (nodes.room_pages: free
        memory above each zone's high watermark and reserve), in bytes."""
        pages = nodes.room_pages(node)
        return (1 << 62) if pages is None else pages * PAGE  # not known: let the call find out

    def move_process(self, pid: int, node: int, budget: TokenBucket) -> MoveResult | None:
        """A whole-process home move in one migrate_pages(2) call, the path `migratepages`
        takes, where the budgets and the node's free memory cover every page that would move
        now (else None: the caller moves it in budgeted move_pages batches, in its own order).
        Where every page is, is found first, and those not on `node` journalled before the
        call, as move() does: per mapping, from numa_maps' count per node where all its
        resident pages are on one other node (then its present pages, from pagemap, are the
        ones to move), and page by page (move_pages' query) where they are on several.

        Asked once: what moved is counted from the call's own figure (the pages it could not
        move) less the pages another process maps too, which it skips without counting them
        (pagemap's bit 56, read before the call). Only where the call reports pages it could
        not move, or the node filled part way, are the journalled pages asked again, page by
        page. Nothing here goes page by page in Python (runs are found with bytes.find over
        pagemap, or itertools.groupby over the query's answer): a 20,000-page process once spent
        more time here than in the kernel's migration."""
        result = MoveResult()
        try:
            placed = mempolicy.pages_per_mapping(pid)
            with pagemap.Pagemap(pid) as reader:
                found = self._not_on(pid, node, placed, reader, result)
        except OSError:
            if procfs.alive(pid):
                raise
            result.gone = True  # its /proc files went with it
            return result
        if found is None:
            return result
        runs, shared, already = found
        moving = sum(count for _first, count, _on in runs)
        result.asked, result.already = already + moving, already
        if not runs:
            return result
        if moving * PAGE > min(budget.available(), self.host_budget.available()):
            return None
        if moving * PAGE > self.free_bytes(node):
            # migrate_pages(2) moves in address order and stops at the first page the node has
            # no room for; in batches, the caller's order (written regions first) decides
            return None
        self.journal.record_runs(pid, runs)  # written ahead, as in move()
        started = time.monotonic()
        try:
            left = mempolicy.migrate_pages(pid, {on for _, _, on in runs}, node)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                result.gone = True
                return result
            if exc.errno != errno.ENOMEM:
                raise
            result.full = True  # the node filled up part way: count what did move, below
            left = -1
        failpoint("pages.moved-batch")
        self.calls += 1
        self.seconds += time.monotonic() - started
        self.whole_calls += 1
        if left == 0:
            result.moved, result.shared = moving - shared, shared
        else:  # some did not move: which, page by page
            asked_again = array.array("Q")
            for first, count, _on in runs:
                asked_again.extend(range(first, first + count * PAGE, PAGE))
            after = self._ask(pid, asked_again, result)
            if after is not None:
                result.moved = after.count(node)
                stayed = [(first, count) for first, count, on in runs_off(
                    [(first, first + count * PAGE) for first, count, _on in runs], after, node)]
                result.shared = pagemap.shared_pages(pid, stayed)
        result.failed = moving - result.moved - result.shared
        budget.take(result.moved * PAGE)
        self.host_budget.take(result.moved * PAGE)
        return result

    def _not_on(self, pid: int, node: int, placed: dict[int, tuple[dict[int, int], bool]],
                reader: pagemap.Pagemap, result: MoveResult
                ) -> tuple[list[tuple[int, int, int]], int, int] | None:
        """The runs of a process's resident pages not on `node` (first address, pages, the node
        they are on), how many of them another process maps too, and how many pages are on
        `node` already; None where the process exited (result.gone)."""
        runs: list[tuple[int, int, int]] = []
        shared = already = 0
        for start, end in movable_mappings(pid):
            counts, hugetlb = placed.get(start, ({}, False))
            already += counts.get(node, 0)
            off = [on for on in counts if on != node]
            if not off:
                continue
            if len(counts) == 1 and not hugetlb:
                # every resident page on one other node (numa_maps): the present ones are
                # the pages to move, found in pagemap without asking page by page
                present, vma_shared = reader.present_runs(start, end, MAX_RUN)
                runs += [(first, count, off[0]) for first, count in present]
                shared += vma_shared
                continue
            # pages on several nodes (or hugetlb): asked where each is
            where = self._ask(pid, array.array("Q", range(start, end, PAGE)), result)
            if where is None:
                return None
            mixed = runs_off([(start, end)], where, node)
            runs += mixed
            shared += reader.shared([(first, count) for first, count, _on in mixed])
        return runs, shared, already

    def restore(self, only: set[int] | None = None) -> int:
        """Move every journalled page back to its original node (or only those of the processes
        in `only`); how many went back."""
        restored = 0
        unlimited = TokenBucket(1e9)
        for pid, pages in self.journal.entries().items():
            if only is not None and pid not in only:
                continue
            by_node: dict[int, list[int]] = {}
            for address, node in pages.items():
                by_node.setdefault(node, []).append(address)
            for node, addresses in by_node.items():
                result = self.move(pid, addresses, node, unlimited)
                restored += result.moved
                if result.gone:
                    break
        if only is None:
            self.journal.clear()
        else:
            self.journal.forget(only)
        return restored


def resident_regions(pid: int, proc: Path = Path("/proc")) -> list[tuple[int, int]]:
    """The private, writable mappings of a process (heap, stacks, anonymous memory, private file
    data), as 2 MiB-aligned [start, end) ranges clipped to each mapping."""
    ranges = []
    try:
        text = (proc / str(pid) / "maps").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        fields = line.split()
        span, perms = fields[0], fields[1]
        name = fields[5] if len(fields) > 5 else ""
        if "w" not in perms or "p" not in perms or name in ("[vsyscall]", "[vvar]", "[vdso]"):
            continue
        start, end = (int(x, 16) for x in span.split("-"))
        ranges += aligned(start, end)
    return ranges


def movable_mappings(pid: int, proc: Path = Path("/proc")) -> list[tuple[int, int]]:
    """Every mapping of a process (its text, libraries and read-only data too, not the kernel's
    [vsyscall], [vvar], [vdso]) as (start, end): what migrate_pages(2) may move of it."""
    try:
        text = (proc / str(pid) / "maps").read_text()
    except OSError:
        return []
    ranges = []
    for line in text.splitlines():
        fields = line.split()
        name = fields[5] if len(fields) > 5 else ""
        # a reservation with no access (runtimes reserve terabytes that way) holds no page
        if fields[1].startswith("---") or name in ("[vsyscall]", "[vvar]", "[vdso]", "[vvar_vclock]"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        ranges.append((start, end))
    return ranges


def clip(start: int, end: int, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [start, end) inside `ranges` (sorted, not overlapping, as resident_regions
    gives them): what of an access region may be moved, in 2 MiB-aligned pieces."""
    lo = bisect.bisect_right(ranges, (start, 1 << 64)) - 1
    parts = []
    for a, b in ranges[max(lo, 0):]:
        if a >= end:
            break
        if b > start:
            parts.append((max(a, start), min(b, end)))
    return parts


@dataclass(frozen=True)
class Room:
    """What a rule's home node can take now (the pages that would go there and are not there yet
    compete for it), and what may make more of it: write-slow nodes that read nearly as fast as
    DRAM (Topology.reads_near_dram), where read-mostly memory can go in its place."""

    free: int  # bytes the home node can still take (PageMover.free_bytes)
    read_fast: frozenset[int] = frozenset()
    hold_unknown: bool = False  # writes not measured yet: memory of unknown writes waits for them


def _share(region: AccessRegion, start: int, end: int, node: int, *, on: bool) -> int:
    """A piece's part of the region's resident bytes on `node` (on=True) or off it, pro rata."""
    total = sum(region.bytes_by_node.values())
    there = region.bytes_by_node.get(node, 0)
    size = there if on else total - there
    return size * (end - start) // max(region.end - region.start, 1)


def by_heat(regions: Sequence[AccessRegion], movable: list[tuple[int, int]], home: int, demote: int,
            cold_seconds: float, write_slow: set[int],
            room: Room | None = None, full: float = 0.0) -> list[tuple[int, int, int]]:
    """Where each part of a process's memory belongs, by the heat the access probe saw: hot
    regions on `home`, once their accesses are at least MOVE_HOT_SHARE of the process's hottest
    region's (one that straddles hot and cold pages reads in between, and waits for DAMON to
    split it); cold ones (no access for `cold_seconds`) on `demote`, unless they are
    written (WRITE_HEAVY) and that node writes slowly. Warm ones (a little access, or too new to
    tell) and cold ones not that old yet stay where they are: they may be going either way, and a
    move is worth its cost only for what is known. With no `demote` (-1) the rule has one place
    for all of it, `home`. Only the `movable` parts (resident_regions), hot ones first, and the
    written (WRITE_HEAVY) among those first of all, since a write costs most on a slower node.

    With `room`, where `home` has no room for everything that would go there, what is written
    gets it (_short_of_room): memory of unknown writes waits while they are measured, read-mostly
    memory on `home` makes way to a node that reads nearly as fast, and the rest comes home only
    as far as the room left allows."""
    peak = _peak(regions)
    going_home: list[tuple[AccessRegion, int, int]] = []
    down: list[tuple[int, int, int]] = []
    for region in regions:
        written = is_written(region)
        if demote < 0 or _hot_enough(region, peak, full):
            going_home += [(region, start, end) for start, end in clip(region.start, region.end, movable)]
        elif (region.heat == "cold" and region.age_s >= cold_seconds
              and not (written and demote in write_slow)):
            down += [(start, end, demote) for start, end in clip(region.start, region.end, movable)]
    going_home.sort(key=lambda piece: not is_written(piece[0]))  # stable: address order within each
    need = sum(_share(region, start, end, home, on=False) for region, start, end in going_home)
    if room is not None and need > room.free:
        return _short_of_room(going_home, home, room) + down
    return [(start, end, home) for _region, start, end in going_home] + down


def _peak(regions: Sequence[AccessRegion]) -> float:
    return max((r.accesses for r in regions if r.heat == "hot"), default=0.0)


def _hot_enough(region: AccessRegion, peak: float, full: float) -> bool:
    """Whether a hot region moves home now: at MOVE_HOT_SHARE of the process's hottest region's
    accesses. One whose accesses just changed (DAMON's age 0) must also be at MOVE_HOT_SHARE of
    `full`, the accesses of a region read at every sample: a region that straddles hot and
    cold pages is often the hottest there is when its process wakes up (DAMON merged the two
    while both were idle), and DAMON splits it at the next aggregation. In the lab one such
    region held 79% of a 32 MiB cold range, and all of it went up to DRAM."""
    if region.heat != "hot" or region.accesses < MOVE_HOT_SHARE * peak:
        return False
    return region.age_s > 0 or region.accesses >= MOVE_HOT_SHARE * full


def held_back(regions: Sequence[AccessRegion], home: int, full: float = 0.0) -> bool:
    """Whether by_heat holds back a hot region with memory off `home` (_hot_enough): one that
    straddles hot and cold pages until DAMON splits it, or one whose sampled accesses read low
    this time; worth judging again at the next aggregation rather than a placement period later."""
    peak = _peak(regions)
    return any(r.heat == "hot" and not _hot_enough(r, peak, full)
               and sum(r.bytes_by_node.values()) > r.bytes_by_node.get(home, 0) for r in regions)


def is_written(region: AccessRegion) -> bool:
    """Written enough to be a writer's (WRITE_HEAVY of its resident pages, by soft-dirty or write faults)."""
    return region.written_fraction is not None and region.written_fraction >= WRITE_HEAVY


def _short_of_room(going_home: list[tuple[AccessRegion, int, int]], home: int,
                   room: Room) -> list[tuple[int, int, int]]:
    """by_heat's placement where `home` cannot take all that would go there. The written pieces
    go home, and before them, as much read-mostly memory (READ_MOSTLY) now on `home` as makes
    room for them goes to a node in room.read_fast (it reads there nearly as fast, and is not
    written). The other pieces come home only as far as the room left allows, in order, and
    those of unknown writes not at all while room.hold_unknown: moved first, a range that is
    only read would take the room a written one needs (the pmem benchmark's first placement
    filled DRAM with its read range that way)."""
    written = [(r, a, b) for r, a, b in going_home if is_written(r)]
    others = [(r, a, b) for r, a, b in going_home if not is_written(r)]
    free = room.free
    wanted = sum(_share(r, a, b, home, on=False) for r, a, b in written)
    spill = min((n for n in room.read_fast if n != home), default=None)
    making_room: list[tuple[int, int, int]] = []
    if spill is not None:
        for region, start, end in others:
            if free >= wanted:
                break
            reader = region.written_fraction is not None and region.written_fraction <= READ_MOSTLY
            on_home = _share(region, start, end, home, on=True)
            if reader and on_home:
                making_room.append((start, end, spill))
                free += on_home
    placed = making_room + [(start, end, home) for _region, start, end in written]
    free -= wanted
    spilled = {(start, end) for start, end, _node in making_room}
    for region, start, end in others:
        if (start, end) in spilled or (room.hold_unknown and region.written_fraction is None):
            continue
        size = _share(region, start, end, home, on=False)
        if size <= free:
            placed.append((start, end, home))
            free -= size
    return placed


def aligned(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) cut at 2 MiB boundaries: the unit a budget defers."""
    pieces = []
    region = start - start % REGION
    while region < end:
        pieces.append((max(region, start), min(region + REGION, end)))
        region += REGION
    return pieces


def runs_off(regions: list[tuple[int, int]], where: Sequence[int], node: int) -> list[tuple[int, int, int]]:
    """The runs (first address, pages, the node they are on) of resident pages not on `node`,
    from `where`, the status of every page of `regions` in order (move_pages' answer), no run
    longer than MAX_RUN."""
    runs: list[tuple[int, int, int]] = []
    index = 0
    for start, end in regions:
        pages = (end - start) // PAGE
        address = start
        for on, group in itertools.groupby(where[index : index + pages]):
            count = len(list(group))
            if on >= 0 and on != node:
                while count > 0:
                    part = min(count, MAX_RUN)
                    runs.append((address, part, on))
                    address += part * PAGE
                    count -= part
            else:
                address += count * PAGE
        index += pages
    return runs


def pages_of(start: int, end: int) -> list[int]:
    return list(range(start, end, PAGE))
