"""The pure parts under the actuator and the probes: the token bucket, move_pages call sizing,
classifying processes on a fixture /proc, and counter-map deltas."""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any

from llamas_ebpf.actuator.pages import PAGE, TARGET_BATCH_S, TokenBucket, next_batch, runs_off
from llamas_ebpf.config import Guardrails
from llamas_ebpf.policy.compile import classify, touchable
from llamas_ebpf.policy.document import PolicyDocument
from llamas_ebpf.probes.base import CounterMap


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate_and_bursts_one_second():
    clock = Clock()
    bucket = TokenBucket(2, clock)  # 2 MB/s
    assert bucket.available() == 2e6
    bucket.take(1.5e6)
    assert bucket.available() == 0.5e6
    clock.now += 0.25
    assert bucket.available() == 1e6
    clock.now += 10
    assert bucket.available() == 2e6  # never more than one second's worth
    bucket.take(3e6)  # a batch may overdraw; the debt is paid back before the next
    assert bucket.available() == -1e6
    clock.now += 1
    assert bucket.available() == 1e6


def test_move_pages_calls_aim_at_the_target_time():
    assert next_batch(256, 256, TARGET_BATCH_S / 4) == 512  # fast: at most doubles
    assert next_batch(256, 256, TARGET_BATCH_S) == int(256 * 0.9)  # on target: 90% of it
    assert next_batch(256, 256, 10.0) == 16  # very slow: never below 16
    assert next_batch(40000, 40000, TARGET_BATCH_S / 100) == 65536  # never above 65536
    assert next_batch(300, 300, 0.0) == 300  # a clock that did not move says nothing


def _proc(root: Path, pid: int, comm: str, flags: int = 0, cgroup: str = "/", exe: str = "/usr/bin/x") -> None:
    d = root / str(pid)
    d.mkdir()
    fields = ["S"] + ["0"] * 5 + [str(flags)] + ["0"] * 40
    (d / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
    (d / "comm").write_text(comm + "\n")
    (d / "cgroup").write_text(f"0::{cgroup}\n")
    os.symlink(exe, d / "exe")


def test_classify_on_a_fixture_proc(tmp_path):
    _proc(tmp_path, 1, "systemd")
    _proc(tmp_path, 2, "kthreadd", flags=0x00200000)  # PF_KTHREAD
    _proc(tmp_path, 100, "redis-server", cgroup="/db.slice/redis")
    _proc(tmp_path, 101, "redis-server", exe="/opt/redis")
    _proc(tmp_path, 200, "worker", cgroup="/batch.slice/w", exe="/opt/work")
    _proc(tmp_path, 300, "sshd")
    (tmp_path / "self").mkdir()  # not a process
    doc = PolicyDocument.model_validate({"schema": "llamas.policy/v1", "rules": [
        {"name": "by-exe", "match": {"exe": "/opt/work"}, "cpu": {"nodes": [0]}},
        {"name": "redis", "match": {"comm": "redis-server"}, "cpu": {"nodes": [0]}},
        {"name": "batch", "match": {"cgroup": "/batch.slice"}, "cpu": {"nodes": [0]}},
        {"name": "init", "match": {"pid": 1}, "cpu": {"nodes": [0]}},
        {"name": "ssh", "match": {"comm": "sshd"}, "cpu": {"nodes": [0]}},
    ]})
    guard = Guardrails(deny_comm=["sshd"])
    assert classify(doc, guard, tmp_path) == {100: 1, 101: 1, 200: 0}  # first rule wins; never 1, 2, sshd
    scoped = Guardrails(scope_cgroups=["/db.slice"])
    assert classify(doc, scoped, tmp_path) == {100: 1}
    assert not touchable(2, guard, tmp_path) and not touchable(999, guard, tmp_path)


class _Key(ctypes.Structure):
    _fields_ = [("tgid", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class _Leaf(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


class Table:
    """The shape of a BCC table that CounterMap reads: Key, Leaf, items(), deletion. Its map_fd
    is not open, so CounterMap takes its iteration path (the batch path is in the host tier)."""

    Key, Leaf = _Key, _Leaf
    map_fd, max_entries = 999_999, 64  # no such fd: bpf(2) fails, and the reader falls back

    def __init__(self) -> None:
        self.data: dict[int, tuple[int, int]] = {}

    def items(self) -> list[tuple[_Key, _Leaf]]:
        return [(_Key(k, 0), _Leaf(*v)) for k, v in self.data.items()]

    def __delitem__(self, key: _Key) -> None:
        del self.data[key.tgid]


def test_counter_map_gives_deltas_forgets_the_dead_and_survives_eviction():
    table = Table()
    counters = CounterMap(table, owner=lambda k: k[0], percpu=False, ask_every=1)  # asked at every read
    table.data = {10: (5, 1), 11: (2, 0)}
    assert counters.read(alive=lambda pid: True) == {(10, 0): (5, 1), (11, 0): (2, 0)}
    table.data[10] = (7, 1)
    assert counters.read(alive=lambda pid: True) == {(10, 0): (2, 0)}  # 11 did not change: no entry
    table.data[10] = (1, 0)  # evicted and inserted again: the new count is the delta
    assert counters.read(alive=lambda pid: pid != 11) == {(10, 0): (1, 0)}
    assert 11 not in table.data and counters.deleted_total == 1 and counters.live == 1
    assert counters.live_keys() == {(10, 0)}


def test_an_unchanged_key_is_asked_about_once_in_ask_every_reads():
    """A thousand idle keys cost a quarter of the kill(2)s a read; one whose task ended goes
    within four reads; a key that changed is not asked about."""
    table = Table()
    counters = CounterMap(table, owner=lambda k: k[0], percpu=False, ask_every=4)
    table.data = {pid: (1, 0) for pid in range(1000, 2000)}
    counters.read(alive=lambda pid: True)
    reads: list[list[int]] = []

    def alive(pid: int) -> bool:
        reads[-1].append(pid)
        return pid != 1234

    while 1234 in table.data and len(reads) < 8:
        table.data[1000 + len(reads) * 4 + 1] = (2 + len(reads), 0)  # one changes every read
        reads.append([])
        counters.read(alive=alive)
    assert len(reads) <= 4 and counters.deleted_total == 1, [len(r) for r in reads]
    for number, asked in enumerate(reads):
        assert len(asked) == len({pid for pid in asked}) <= 250
        assert len({pid % 4 for pid in asked}) == 1  # one share of the keys a read
        assert 1000 + number * 4 + 1 not in asked  # it changed in that read


def test_counter_map_reads_the_leading_fields_and_a_widened_one_gives_all_it_counted():
    """numa_alloc reads a node's slot only once the node has had pages: a field read for the
    first time gives everything it counted since the start, never a part of it."""
    table = Table()
    counters = CounterMap(table, owner=lambda k: k[0], percpu=False)
    counters.fields = 1
    table.data = {10: (5, 3)}
    assert counters.read(alive=lambda pid: True) == {(10, 0): (5,)}
    table.data[10] = (7, 4)
    assert counters.read(alive=lambda pid: True) == {(10, 0): (2,)}
    counters.widen(2)
    table.data = {10: (8, 4), 11: (1, 1)}
    assert counters.read(alive=lambda pid: True) == {(10, 0): (1, 4), (11, 0): (1, 1)}
    counters.widen(1)  # never narrower
    table.data = {10: (8, 6), 11: (1, 1)}
    assert counters.read(alive=lambda pid: True) == {(10, 0): (0, 2)}


def test_counter_map_subtracts_many_keys_at_once_and_key_by_key_when_one_falls():
    table = Table()
    counters = CounterMap(table, owner=lambda k: k[0], percpu=False)
    table.data = {pid: (pid, 1) for pid in range(100, 200)}
    assert len(counters.read(alive=lambda pid: True)) == 100
    table.data = {pid: (pid + pid % 3, 1) for pid in range(100, 200)}  # a third did not change
    expected = {(pid, 0): (pid % 3, 0) for pid in range(100, 200) if pid % 3}
    assert counters.read(alive=lambda pid: True) == expected
    table.data[150] = (2, 0)  # evicted and inserted again: its new count, the others' deltas
    table.data[151] = (151 + 151 % 3 + 4, 1)
    assert counters.read(alive=lambda pid: True) == {(150, 0): (2, 0), (151, 0): (4, 0)}


class _Slot(ctypes.Structure):
    _fields_ = [("key", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


class ProcTable(Table):
    """A per-process map with u32 keys, as LLAMAS_CACHED slots sit in front of."""

    Key = ctypes.c_uint32

    def items(self) -> list[tuple[Any, _Leaf]]:
        return [(ctypes.c_uint32(k), _Leaf(*v)) for k, v in self.data.items()]

    def __delitem__(self, key: Any) -> None:
        del self.data[key.value]


class CacheTable:
    """The cache slots: an array of (key, value) slots (one CPU's copy, as percpu=False reads)."""

    Key, sLeaf = ctypes.c_int, _Slot
    map_fd, max_entries = 999_999, 4

    def __init__(self) -> None:
        self.slots: dict[int, tuple[int, int, int]] = {}

    def items(self) -> list[tuple[Any, _Slot]]:
        slots = [self.slots.get(i, (0, 0, 0)) for i in range(self.max_entries)]
        return [(ctypes.c_int(i), _Slot(key, 0, a, b)) for i, (key, a, b) in enumerate(slots)]


def test_cached_counter_map_adds_the_slots_and_never_counts_twice():
    table, cache = ProcTable(), CacheTable()
    counters = CounterMap(table, owner=lambda k: k[0], percpu=False, cache=cache, ask_every=1)
    everyone = {10, 11, 12, 13}
    cache.slots = {0: (10, 3, 1)}
    assert counters.read(alive=everyone.__contains__) == {(10,): (3, 1)}
    table.data, cache.slots = {10: (3, 1)}, {0: (11, 1, 0)}  # 11 took 10's slot: 10 went into the map
    assert counters.read(alive=everyone.__contains__) == {(11,): (1, 0)}
    # 12 took 11's slot between the map's read and the slots': 11 is in neither this time
    cache.slots = {0: (12, 2, 0)}
    assert counters.read(alive=everyone.__contains__) == {(12,): (2, 0)}
    table.data[11] = (1, 0)
    assert counters.read(alive=everyone.__contains__) == {}  # 11 found in the map: not again
    # 10 ended, with counts both in the map and in a slot: read once, deleted from the map
    cache.slots[1] = (10, 1, 0)
    table.data[10] = (3, 1)
    everyone.discard(10)
    assert counters.read(alive=everyone.__contains__) == {(10,): (1, 0)}
    assert 10 not in table.data and (10,) in counters.live_keys()
    assert counters.read(alive=everyone.__contains__) == {}  # its slot's counts were already given
    table.data[10], cache.slots[1] = (1, 0), (13, 5, 5)  # 13 pushed them into the map
    assert counters.read(alive=everyone.__contains__) == {(13,): (5, 5)}
    # a key that changed in a read is asked about at the next read it does not change in
    assert 10 in table.data
    assert counters.read(alive=everyone.__contains__) == {}
    assert 10 not in table.data and (10,) not in counters.live_keys()


def test_journal_reload_keeps_what_was_not_saved_yet(tmp_path):
    """A daemon stopped by a signal between pinning a thread and writing its journal still
    restores that thread: reloading merges the file with what it remembered."""
    from llamas_ebpf.actuator.affinity import Journal

    path = tmp_path / "originals.json"
    other = Journal(path)  # another process (an apply from another shell) pins and saves
    other.remember(10, 10, {0, 1})
    other.save()
    mine = Journal(path)
    mine.remember(20, 21, {0, 1})  # pinned, not saved yet
    mine.reload()
    assert mine.masks == {10: (10, [0, 1]), 21: (20, [0, 1])}
    mine.save()
    assert Journal(path).masks == mine.masks
    mine.forget({10})
    assert Journal(path).masks == {21: (20, [0, 1])}


def test_placement_by_heat_moves_hot_home_leaves_warm_and_young_cold_and_keeps_writes_off_slow_writers():
    from llamas_ebpf.actuator.pages import aligned, by_heat
    from llamas_ebpf.snapshot import AccessRegion

    mib = 1 << 20
    movable = aligned(0, 16 * mib) + aligned(20 * mib, 24 * mib)  # 16-20 MiB is not movable (text)
    regions = [
        AccessRegion(0, 4 * mib, 12.0, 20.0, "hot"),
        AccessRegion(4 * mib, 6 * mib, 1.0, 1.0, "warm"),
        AccessRegion(6 * mib, 8 * mib, 0.0, 10.0, "cold"),  # cold, not yet cold_seconds old
        AccessRegion(8 * mib, 12 * mib, 0.0, 45.0, "cold", written_fraction=0.05),
        AccessRegion(12 * mib, 14 * mib, 0.0, 45.0, "cold", written_fraction=0.8),  # written
        AccessRegion(14 * mib, 20 * mib, 9.0, 45.0, "hot"),
        # hot, but at a third of the hottest region's accesses: it straddles the edge of the hot
        # range, and waits for DAMON to split it
        AccessRegion(20 * mib, 24 * mib, 4.0, 45.0, "hot"),
    ]
    placed = by_heat(regions, movable, home=0, demote=2, cold_seconds=30, write_slow={2})
    # warm (a little access, or too new to tell) stays where it is, as does cold not yet 30 s old
    assert placed == [
        (0, 2 * mib, 0), (2 * mib, 4 * mib, 0), (14 * mib, 16 * mib, 0),
        (8 * mib, 10 * mib, 2), (10 * mib, 12 * mib, 2),
    ]
    # a node that writes as fast as it reads takes the written cold region too
    placed = by_heat(regions, movable, home=0, demote=2, cold_seconds=30, write_slow=set())
    assert (12 * mib, 14 * mib, 2) in placed
    # no demote node: the rule has one place for all of it
    # (the written region first)
    everything = by_heat(regions, movable, 0, -1, 30, set())
    assert everything[0] == (12 * mib, 14 * mib, 0)
    assert sorted(everything) == [(start, end, 0) for start, end in movable]
    # the region at a third of the peak is held back, and worth judging again soon; once its
    # memory is home, or once it is as hot as the rest, it is not
    from llamas_ebpf.actuator.pages import held_back

    assert held_back([regions[0], AccessRegion(20 * mib, 24 * mib, 4.0, 45.0, "hot", {2: 4 * mib})], home=0)
    at_home = AccessRegion(20 * mib, 24 * mib, 4.0, 45.0, "hot", {0: 4 * mib})
    assert not held_back([regions[0], at_home], home=0)
    assert not held_back([regions[0], AccessRegion(20 * mib, 24 * mib, 11.0, 45.0, "hot", {2: 4 * mib})], home=0)
    # a process that just woke: its hottest region is new (age 0) and reads 11 of 20 samples,
    # where a region read at every sample reads 20: it straddles hot and cold pages and waits
    # for DAMON's next split; one at 19 of 20 moves at once, as does the straddler once its
    # accesses have held for an aggregation
    woke = AccessRegion(0, 56 * mib, 11.0, 0.0, "hot", {2: 56 * mib})
    assert by_heat([woke], aligned(0, 56 * mib), 0, 2, 30, set(), full=20.0) == []
    assert held_back([woke], home=0, full=20.0)
    saturated = AccessRegion(0, 4 * mib, 19.0, 0.0, "hot", {2: 4 * mib})
    assert by_heat([saturated], aligned(0, 4 * mib), 0, 2, 30, set(), full=20.0) == [(0, 2 * mib, 0), (2 * mib, 4 * mib, 0)]
    assert not held_back([saturated], home=0, full=20.0)
    held = AccessRegion(0, 4 * mib, 11.0, 1.0, "hot", {2: 4 * mib})
    assert len(by_heat([held], aligned(0, 4 * mib), 0, 2, 30, set(), full=20.0)) == 2
    # two hot regions, the second written: it goes home first (home may have room for one)
    read, written = AccessRegion(0, 2 * mib, 12.0, 20.0, "hot", written_fraction=0.0), \
        AccessRegion(2 * mib, 4 * mib, 12.0, 20.0, "hot", written_fraction=0.9)
    assert by_heat([read, written], aligned(0, 4 * mib), 0, 2, 30, {2}) == [(2 * mib, 4 * mib, 0), (0, 2 * mib, 0)]



def test_placement_short_of_room_gives_dram_to_what_is_written():
    """Home (node 0) cannot take all that would go there: the written range gets it, read-mostly
    memory on node 0 makes way to node 2 (write-slow, reads nearly as fast) as far as needed,
    the rest comes home only within the room left, and memory of unknown writes waits while
    they are measured. With room for all, nothing changes."""
    from llamas_ebpf.actuator.pages import Room, aligned, by_heat
    from llamas_ebpf.snapshot import AccessRegion

    mib = 1 << 20
    movable = aligned(0, 12 * mib)
    written = AccessRegion(0, 4 * mib, 12.0, 20.0, "hot", {2: 4 * mib}, written_fraction=0.9)
    read_home = AccessRegion(4 * mib, 8 * mib, 12.0, 20.0, "hot", {0: 4 * mib}, written_fraction=0.0)
    read_slow = AccessRegion(8 * mib, 12 * mib, 12.0, 20.0, "hot", {2: 4 * mib}, written_fraction=0.0)
    regions = [written, read_home, read_slow]
    # 2 MiB free, 4 MiB written to bring: one 2 MiB piece of the read range on node 0 goes to
    # node 2 first, then the written range comes home; the read range on node 2 stays there
    assert by_heat(regions, movable, 0, -1, 30, {2}, Room(2 * mib, frozenset({2}))) == [
        (4 * mib, 6 * mib, 2), (0, 2 * mib, 0), (2 * mib, 4 * mib, 0), (6 * mib, 8 * mib, 0)]
    # no node that reads fast: nothing makes way, the written range still goes first
    assert by_heat(regions, movable, 0, -1, 30, {2}, Room(2 * mib))[:2] == [(0, 2 * mib, 0), (2 * mib, 4 * mib, 0)]
    # room for all of it: as without a room
    plenty = by_heat(regions, movable, 0, -1, 30, {2}, Room(1 << 40, frozenset({2})))
    assert plenty == by_heat(regions, movable, 0, -1, 30, {2})
    assert plenty[:2] == [(0, 2 * mib, 0), (2 * mib, 4 * mib, 0)]
    # writes not measured yet for the rest: it waits, the written range comes home
    small = AccessRegion(0, 2 * mib, 12.0, 20.0, "hot", {2: 2 * mib}, written_fraction=0.9)
    unknown = AccessRegion(2 * mib, 6 * mib, 12.0, 20.0, "hot", {2: 4 * mib})
    movable = aligned(0, 6 * mib)
    assert by_heat([small, unknown], movable, 0, -1, 30, {2}, Room(4 * mib, hold_unknown=True)) == [
        (0, 2 * mib, 0)]
    # once the wait is over, it comes home as far as the room left (2 MiB) allows
    assert by_heat([small, unknown], movable, 0, -1, 30, {2}, Room(4 * mib)) == [
        (0, 2 * mib, 0), (2 * mib, 4 * mib, 0)]

def test_journal_forgets_exited_processes_and_sets_a_damaged_file_aside(tmp_path):
    """Originals of processes that exited go (100,000 short-lived processes must not grow the
    journal, and a reused pid must not inherit a dead process's original); a journal whose
    checksum no longer matches is set aside, said, and replaced by the next save."""
    import subprocess

    from llamas_ebpf.actuator.affinity import Journal

    path = tmp_path / "originals.json"
    alive = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        journal = Journal(path)
        journal.remember(alive.pid, alive.pid, {0, 1})
        journal.remember(dead.pid, dead.pid, {0, 1})
        journal.save()
        assert journal.prune() == {dead.pid}
        assert Journal(path).masks == {alive.pid: (alive.pid, [0, 1])}
        sealed = json.loads(path.read_text())
        sealed["data"][str(alive.pid)]["cpus"] = [0]  # edited by hand: the checksum is the old one
        path.write_text(json.dumps(sealed))
        damaged = Journal(path)
        assert "checksum does not match" in damaged.damaged and damaged.masks == {}
        assert (tmp_path / "originals.json.damaged").exists() and not path.exists()
        damaged.remember(alive.pid, alive.pid, {1})
        damaged.save()
        assert Journal(path).masks == {alive.pid: (alive.pid, [1])} and not Journal(path).damaged
    finally:
        alive.kill()
        alive.wait()


def test_runs_off_finds_the_pages_to_move_per_mapping_and_skips_the_absent():
    a, b = 0x10000000, 0x20000000
    regions = [(a, a + 6 * PAGE), (b, b + 3 * PAGE)]
    # mapping a: 2 on node 1, 1 absent (-ENOENT), 1 already home, 2 on node 2; mapping b: node 1
    # runs on past a's last page, which must not join b's
    where = [1, 1, -2, 0, 2, 1, 1, 1, 0]
    assert runs_off(regions, where, 0) == [(a, 2, 1), (a + 4 * PAGE, 1, 2), (a + 5 * PAGE, 1, 1),
                                          (b, 2, 1)]
    assert runs_off(regions, [0] * 9, 0) == []


def test_journal_pids_come_without_expanding_a_page(tmp_path):
    from llamas_ebpf.actuator.pages import MAX_RUN, PageJournal

    journal = PageJournal(tmp_path / "pages.jsonl")
    journal.record_runs(10, [(1 << 30, MAX_RUN, 1)])  # 64 GiB in one run: 16M pages if expanded
    journal.record(11, [(4096, 2)])
    with journal.path.open("a") as out:
        out.write('{"pid": 12, "runs": [[0, 0, 1]]}\n')  # damaged: a run of no pages
    assert journal.pids() == {10, 11}
    journal.forget({10})
    assert journal.pids() == {11} and journal.entries() == {11: {4096: 2}} and journal.damaged == 1
