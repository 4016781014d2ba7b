"""What every probe shares: attach chains, compiling through BCC, and reading counter maps.

A probe has an ordered chain of attach methods. `plan` decides, from the capabilities alone,
which methods can be tried and why the others cannot (a pure function, so unit tests can force
capability sets); `attach` then tries them in order and the first that loads wins. The method
chosen and every reason for falling back end up in the probe's ProbeHealth.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import operator
import os
import re
import struct
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import Any, ClassVar

from llamas_ebpf import bpf_headers
from llamas_ebpf.kernel import bpfsys, procfs
from llamas_ebpf.kernel.features import Capabilities
from llamas_ebpf.kernel.nodes import PfnRange
from llamas_ebpf.snapshot import AccessInfo, FaultCounts, OtherProcesses, ProbeHealth, ProcessSample

# bpf/llamas.h, read from the header: the limits and the slots of each program's `health` array.
_H = bpf_headers.defines("llamas.h")
MAX_NODES = _H["LLAMAS_MAX_NODES"]
REGION_SHIFT = _H["LLAMAS_REGION_SHIFT"]  # 2 MiB regions
HEALTH_SLOTS = _H["HEALTH_SLOTS"]
HEALTH_PROC_INSERTS, HEALTH_PROC_FULL = _H["HEALTH_PROC_INSERTS"], _H["HEALTH_PROC_FULL"]
HEALTH_REGION_INSERTS, HEALTH_REGION_FULL = _H["HEALTH_REGION_INSERTS"], _H["HEALTH_REGION_FULL"]
HEALTH_DROPS = _H["HEALTH_DROPS"]
SAMPLE_EVERY = _H["LLAMAS_SAMPLE_EVERY"]


@dataclass(frozen=True)
class AttachMethod:
    name: str
    # None when the capabilities allow this method, else the reason they do not.
    blocker: Callable[[Capabilities], str | None]


def needs_program(prog_type: str, *tracepoints: str) -> Callable[[Capabilities], str | None]:
    def blocker(caps: Capabilities) -> str | None:
        feature = caps.program(prog_type)
        if not feature.available:
            return f"{prog_type} programs unavailable: {feature.reason}"
        missing = [tp for tp in tracepoints if not caps.has_tracepoint(tp)]
        if missing:
            return f"tracepoint {', '.join(missing)} not in this kernel"
        return None

    return blocker


def plan(chain: tuple[AttachMethod, ...], caps: Capabilities) -> list[tuple[AttachMethod, str | None]]:
    """Each method of the chain with the reason it cannot be used (None: it may be tried)."""
    return [(method, method.blocker(caps)) for method in chain]


@dataclass(frozen=True)
class ProgramSource:
    """A probe's C source under bpf/ for one attach method, and the macros it is compiled with
    (`NAME` or `NAME=VALUE`)."""

    file: str
    defines: tuple[str, ...] = ()


@dataclass
class ProbeOptions:
    bpf_dir: Path
    pids: list[int] = field(default_factory=list)
    cgroup_ids: list[int] = field(default_factory=list)
    cuda_lib: Path | None = None
    cpu_to_node: dict[int, int] = field(default_factory=dict)
    pfn_ranges: list[PfnRange] = field(default_factory=list)
    taskstats_top: int = 20
    access_targets: int = 32  # processes the access probe watches ([access] targets)
    soft_dirty: bool = True  # find written pages through soft-dirty where the kernel has it
    focus: set[int] = field(default_factory=set)  # processes asked about (Sensor.detail_pids)

    @property
    def filtered(self) -> bool:
        return bool(self.pids or self.cgroup_ids)


class SnapshotBuilder:
    """Where probes put what they read in one interval; the Sensor turns it into a Snapshot.

    The counters every process has (faults, allocations, hinting faults, CPU moves) come in as
    plain tuples per pid (`faults`, `allocs`, `hints`, `moves`), not as a ProcessSample each: with
    a thousand busy processes, making and filling a thousand samples (and writing them out) was
    most of a collect. `settle` keeps the busiest `keep_top` by each measure and the `keep`
    ones (with `keep_top` None, every one); `finish` sums the rest into OtherProcesses. A process
    a probe asks for by `process` (the access probe's targets, one with GPU calls) is kept too,
    with its counts."""

    def __init__(self, keep_top: int | None = None, keep: set[int] | frozenset[int] = frozenset()) -> None:
        self.processes: dict[int, ProcessSample] = {}
        self.node_faults: dict[int, int] = {}
        self.alloc_matrix: dict[tuple[int, int], int] = {}  # (cpu node, memory node) -> pages
        self.hint_matrix: dict[tuple[int, int], int] = {}
        self.page_migrations: dict[str, tuple[int, int]] = {}  # reason -> (succeeded, failed)
        self.system: dict[str, int] = {}
        self.comm_of: Callable[[int], str | None] = lambda pid: None  # as BPF saw it (faults probe)
        self.access: AccessInfo | None = None  # how the access figures were found
        self.node_heat: dict[int, dict[str, int]] = {}  # node -> hot/warm/cold bytes
        self.keep_top = keep_top
        self.keep = keep
        self.settled = False
        # per pid, not yet in a sample: (user, kernel, read, write) faults; (local, remote,
        # pages on each node...) allocations; (local, remote, migrated) hinting faults;
        # (same node, cross node) CPU moves
        self.faults: dict[int, tuple[int, int, int, int]] = {}
        self.allocs: dict[int, tuple[int, ...]] = {}
        self.hints: dict[int, tuple[int, int, int]] = {}
        self.moves: dict[int, tuple[int, int]] = {}
        self._alive: dict[int, bool] = {}

    def alive(self, pid: int) -> bool:
        """Whether a task exists, asked of the kernel once per collect whichever maps hold it."""
        known = self._alive.get(pid)
        if known is None:
            known = self._alive[pid] = procfs.alive(pid)
        return known

    def process(self, pid: int) -> ProcessSample:
        """The pid's sample, made (and kept) now if it has none, with its counts so far."""
        sample = self.processes.get(pid)
        if sample is None:
            sample = ProcessSample(pid=pid, comm="")
            self.processes[pid] = sample
            self._fill(sample)
        return sample

    def settle(self) -> None:
        """Choose the processes kept (once): every one with counts, or with `keep_top`, the
        busiest by each of MEASURES, `keep_top` of each, and the `keep` ones; give each a
        sample with its counts."""
        if self.settled:
            return
        self.settled = True
        counted = self.faults.keys() | self.allocs.keys() | self.hints.keys() | self.moves.keys()
        if self.keep_top is None:
            chosen: set[int] = counted
        else:
            chosen = set(self.keep) & counted
            for name, measure in MEASURES:
                counts: dict[int, tuple[int, ...]] = getattr(self, name)
                ranked = heapq.nlargest(self.keep_top, counts.items(), key=lambda item: measure(item[1]))
                chosen.update(pid for pid, values in ranked if measure(values))
        for pid in sorted(chosen):
            self.process(pid)
        for sample in self.processes.values():
            self._fill(sample)

    def finish(self) -> OtherProcesses | None:
        """After the last probe: counts that came for kept processes go to their samples; the
        rest are summed (None: every process was kept)."""
        self.settle()
        for sample in self.processes.values():
            self._fill(sample)
        left = self.faults.keys() | self.allocs.keys() | self.hints.keys() | self.moves.keys()
        if not left:
            return None
        others = OtherProcesses(processes=len(left))
        _add_faults(others.faults, _column_sums(self.faults.values(), 4))
        numa = others.numa
        local, remote, *per_node = _column_sums(self.allocs.values(), 2 + MAX_NODES)
        numa.alloc_local, numa.alloc_remote = local, remote
        numa.alloc_pages_by_node = {node: pages for node, pages in enumerate(per_node) if pages}
        if self.hints:
            numa.hint_local, numa.hint_remote, numa.hint_migrated_pages = _column_sums(self.hints.values(), 3)
        moved = others.cpu_migrations
        moved.same_node, moved.cross_node = _column_sums(self.moves.values(), 2)
        self.faults, self.allocs, self.hints, self.moves = {}, {}, {}, {}
        return others

    def _fill(self, sample: ProcessSample) -> None:
        """Move the pid's counts so far into its sample."""
        pid = sample.pid
        faults = self.faults.pop(pid, None)
        if faults is not None:
            _add_faults(sample.faults, faults)
        allocs = self.allocs.pop(pid, None)
        if allocs is not None:
            numa = sample.numa
            numa.alloc_local += allocs[0]
            numa.alloc_remote += allocs[1]
            per_node = allocs[2 : 2 + MAX_NODES]
            by_node = numa.alloc_pages_by_node
            for node, pages in compress(enumerate(per_node), per_node):  # the nodes with pages only
                by_node[node] = by_node.get(node, 0) + pages
        hints = self.hints.pop(pid, None)
        if hints is not None:
            numa = sample.numa
            numa.hint_local = (numa.hint_local or 0) + hints[0]
            numa.hint_remote = (numa.hint_remote or 0) + hints[1]
            numa.hint_migrated_pages = (numa.hint_migrated_pages or 0) + hints[2]
        moves = self.moves.pop(pid, None)
        if moves is not None:
            sample.cpu_migrations.same_node += moves[0]
            sample.cpu_migrations.cross_node += moves[1]


# what makes a process busy enough to keep (SnapshotBuilder.settle): the builder's counts and
# the figure of them ranked
MEASURES: tuple[tuple[str, Callable[[tuple[int, ...]], int]], ...] = (
    ("faults", lambda c: c[0] + c[1]),  # user + kernel
    ("allocs", lambda c: c[0] + c[1]),  # pages allocated, local + remote
    ("allocs", lambda c: c[1]),  # remote
    ("hints", lambda c: c[1]),  # remote hinting faults
    ("moves", lambda c: c[1]),  # cross-node CPU moves (a move within a node costs no locality)
)


def _add_faults(faults: FaultCounts, counts: Iterable[int]) -> None:
    user, kernel, read, write = counts
    faults.user += user
    faults.kernel += kernel
    faults.read += read
    faults.write += write


def _column_sums(rows: Iterable[tuple[int, ...]], width: int) -> list[int]:
    """Each field summed over the rows (zeros where there are none)."""
    columns = list(map(sum, zip(*rows, strict=True)))
    return columns or [0] * width


class Probe(ABC):
    name: ClassVar[str]
    chain: ClassVar[tuple[AttachMethod, ...]]
    # True where collect picks among the processes the counters found (SnapshotBuilder.settle
    # runs before it)
    reads_processes: ClassVar[bool] = False

    def __init__(self, options: ProbeOptions) -> None:
        self.options = options
        self.method: str | None = None
        self.bpf: Any = None
        self.owns_bpf = True  # False while the object is the sensor's bundle, shared
        self.programs: set[str] | None = None  # this probe's functions in a shared object
        self.caps: Capabilities | None = None
        self.health_counters: HealthCounters | None = None

    @property
    def health_map(self) -> str:
        return f"{self.name}_health"

    def per_process(self, table: str, regions: str | None = None, cached: bool = False,
                    sampled: bool = False) -> CounterMap:
        """The probe's per-process counter map (keys lead with the tgid or tid), and its health
        counted against it: map-full events and LRU evictions (and those of its per-region map).
        `cached`: the source puts LLAMAS_CACHED slots in front of the map; `sampled`: it counts
        through LLAMAS_SAMPLED, whose estimated events the health reports (bpf/llamas.h)."""
        cache = self.bpf[f"{table}_cache"] if cached else None
        proc_map = CounterMap(self.bpf[table], owner=lambda k: k[0], cache=cache)
        maps = {HEALTH_PROC_INSERTS: proc_map}
        if regions is not None:
            maps[HEALTH_REGION_INSERTS] = CounterMap(self.bpf[regions], owner=lambda k: k[0])
        rate = self.bpf[f"{self.name}_rate"] if sampled else None
        self.health_counters = HealthCounters(self.bpf[self.health_map], maps, rate=rate)
        return proc_map

    def attach(self, caps: Capabilities, tried: str = "") -> ProbeHealth:
        """Compile, load and attach alone, through the chain. `tried`: why the shared build did
        not carry this probe, added to the reasons."""
        self.prepare(caps)
        reasons: list[str] = [tried] if tried else []
        for position, (method, blocker) in enumerate(plan(self.chain, caps)):
            if blocker is not None:
                reasons.append(f"{method.name}: {blocker}")
                continue
            try:
                self.start(method.name)
            except Exception as exc:  # BCC raises bare Exceptions for compile and attach errors
                self.close()
                reasons.append(f"{method.name}: {one_line(exc)}")
                continue
            return self.loaded(method.name, position, reasons)
        return ProbeHealth(name=self.name, method=None, status="unavailable",
                           reason="; ".join(reasons) or "no attach method")

    def loaded(self, method: str, position: int, reasons: list[str]) -> ProbeHealth:
        self.method = method
        return ProbeHealth(name=self.name, method=method, status="ok" if position == 0 else "fallback",
                           reason="; ".join(reasons))

    def prepare(self, caps: Capabilities) -> None:
        """Take from the capabilities what source() and bind() need, before either runs."""
        self.caps = caps

    def source(self, method: str) -> ProgramSource | None:
        """The C source for `method` once its preconditions hold (raise if they do not). None:
        this probe does not share an object and compiles in start()."""
        return None

    def bind(self, method: str) -> None:
        """With self.bpf loaded from source(method): fill its maps, attach what BCC does not
        attach by itself, and set up the readers."""
        raise NotImplementedError(f"{self.name} compiles alone, in start()")

    def start(self, method: str) -> None:
        """Compile, load and attach for `method`, alone; raise on any failure."""
        source = self.source(method)
        if source is None:
            raise NotImplementedError(f"{self.name} has no source for {method}")
        self.bpf = compile_bpf(self.options.bpf_dir, source.file, [f"-D{d}" for d in source.defines])
        self.owns_bpf = True
        self.programs = None
        self.bind(method)

    @abstractmethod
    def collect(self, out: SnapshotBuilder) -> None:
        """Add what changed since the last call to `out`."""

    def collect_with_health(self, out: SnapshotBuilder) -> tuple[int, int, int]:
        """collect(), and the (map_full, drops, estimated) of the interval.

        The health totals are read before the maps: an insert that lands between the two
        reads is then in the map but not yet in the insert count, never the other way round,
        which would look like an eviction.
        """
        counters = self.health_counters
        totals = counters.totals() if counters is not None else None
        self.collect(out)
        return counters.read(totals) if counters is not None and totals is not None else (0, 0, 0)

    @property
    def sample_every(self) -> int | None:
        """1 in how many events counts in a storm, where the probe samples (LLAMAS_SAMPLED)."""
        counters = self.health_counters
        return SAMPLE_EVERY if counters is not None and counters.rate is not None else None

    def program_fds(self) -> list[int]:
        if self.bpf is None:
            return []
        return [fn.fd for name, fn in self.bpf.funcs.items()
                if getattr(fn, "fd", None) is not None
                and (self.programs is None or program_name(name) in self.programs)]

    def close(self) -> None:
        if self.bpf is not None and self.owns_bpf:
            with contextlib.suppress(Exception):
                self.bpf.cleanup()
        self.bpf = None
        self.programs = None


def program_name(name: str | bytes) -> str:
    """A key of BCC's `funcs` (bytes or str, by BCC version) as str."""
    return name.decode() if isinstance(name, bytes) else name


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """Hold clang's warnings (written by BCC's C++ to fd 2) and hand them back on request."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            def read() -> str:
                sink.seek(0)
                return sink.read().decode(errors="replace")

            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_DIRECTIVE = re.compile(r"^LLAMAS_(HEALTH|LOOKUP_OR_INIT|CACHED|SAMPLED)\((.*)\);\s*$")


def _health(probe: str) -> str:
    return (f"BPF_PERCPU_ARRAY({probe}_health, u64, HEALTH_SLOTS); "
            f"static __always_inline void {probe}_health_inc(int slot) "
            f"{{ u64 *v = {probe}_health.lookup(&slot); if (v) (*v)++; }}")


def _sampled(probe: str) -> str:
    return (f"BPF_PERCPU_ARRAY({probe}_rate, struct sample_rate, 1); "
            f"static __always_inline u64 {probe}_weight(void) "
            f"{{ u32 zero = 0; struct sample_rate *r = {probe}_rate.lookup(&zero); if (!r) return 1; "
            f"u64 now = bpf_jiffies64(); if (r->tick != now) {{ r->tick = now; r->events = 0; "
            f"r->phase = bpf_get_prandom_u32() % LLAMAS_SAMPLE_EVERY; }} "
            f"if (++r->events <= LLAMAS_EXACT_PER_TICK) return 1; r->estimated++; "
            f"return (r->events - LLAMAS_EXACT_PER_TICK) % LLAMAS_SAMPLE_EVERY == r->phase "
            f"? LLAMAS_SAMPLE_EVERY : 0; }}")


def _lookup_or_init(table: str, key: str, value: str, probe: str, kind: str) -> str:
    if kind not in ("PROC", "REGION"):
        raise ValueError(f"LLAMAS_LOOKUP_OR_INIT: {kind} is neither PROC nor REGION")
    return (f"static __always_inline {value} *{table}_get({key} *key) "
            f"{{ {value} *v = {table}.lookup(key); if (v) return v; {value} zero = {{}}; "
            f"v = {table}.lookup_or_try_init(key, &zero); "
            f"{probe}_health_inc(v ? HEALTH_{kind}_INSERTS : HEALTH_{kind}_FULL); return v; }}")


def _cached(table: str, value: str) -> str:
    # The slot a key takes is key % LLAMAS_CACHE_SLOTS; a key that finds another in its slot adds
    # that one's counts into `table` (this CPU's copy, so no atomics) and takes the slot, zeroed.
    return (f"struct {table}_slot {{ u32 key; u32 pad; {value} value; }}; "
            f"BPF_PERCPU_ARRAY({table}_cache, struct {table}_slot, LLAMAS_CACHE_SLOTS); "
            f"static __always_inline {value} *{table}_counts(u32 key) "
            f"{{ if (key == 0) return 0; u32 index = key % LLAMAS_CACHE_SLOTS; "
            f"struct {table}_slot *slot = {table}_cache.lookup(&index); if (!slot) return 0; "
            f"if (slot->key == key) return &slot->value; "
            f"if (slot->key != 0) {{ {value} *held = {table}_get(&slot->key); if (held) {{ "
            f"u64 *from = (u64 *)&slot->value, *to = (u64 *)held; "
            f"for (int i = 0; i < (int)(sizeof({value}) / 8); i++) to[i] += from[i]; }} }} "
            f"slot->key = key; __builtin_memset(&slot->value, 0, sizeof(slot->value)); "
            f"return &slot->value; }}")


def expand_source(text: str) -> str:
    """A bpf/*.c text with its LLAMAS_HEALTH, LLAMAS_LOOKUP_OR_INIT, LLAMAS_CACHED and LLAMAS_SAMPLED
    lines written out (bpf/llamas.h says why they are not C macros), each on its own line, so
    clang's line numbers stay those of the file."""
    lines = text.split("\n")
    for number, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if match is None:
            continue
        args = [a.strip() for a in match.group(2).split(",")]
        if match.group(1) == "HEALTH" and len(args) == 1:
            lines[number] = _health(args[0])
        elif match.group(1) == "LOOKUP_OR_INIT" and len(args) == 5:
            lines[number] = _lookup_or_init(*args)
        elif match.group(1) == "CACHED" and len(args) == 2:
            lines[number] = _cached(*args)
        elif match.group(1) == "SAMPLED" and len(args) == 1:
            lines[number] = _sampled(args[0])
        else:
            raise ValueError(f"line {number + 1}: {line.strip()}: wrong number of arguments")
    return "\n".join(lines)


def bpf_source(bpf_dir: Path, file: str) -> str:
    """bpf/<file> as BCC is to compile it."""
    return expand_source(bpf_headers.read_source(bpf_dir / file))


# clang flags for every program: an unused variable is an error (the helpers once drifted)
CFLAGS = ("-Wunused-variable", "-Werror=unused-variable")


def compile_bpf(bpf_dir: Path, source: str | None, cflags: list[str] | None = None,
                text: str | None = None, **attach: Any) -> Any:
    """Compile and load bpf/<source>, or `text` (already expanded; it may include bpf/'s
    headers), through BCC. Errors carry clang's first error line."""
    from bcc import BPF  # Debian's python3-bpfcc; imported late so unit tests run without it

    flags = [f"-I{bpf_dir}", *CFLAGS, *(cflags or [])]
    body = text if text is not None else f'#line 1 "{source}"\n' + bpf_source(bpf_dir, str(source))
    with _captured_stderr() as stderr:
        try:
            return BPF(text=body.encode(), cflags=flags, **attach)
        except Exception as exc:
            errors = [line for line in stderr().splitlines() if "error:" in line]
            detail = f" ({errors[0].strip()})" if errors else ""
            raise RuntimeError(f"{one_line(exc)}{detail}") from None
        finally:
            _release_heap()


def _release_heap() -> None:
    """Give back to the system what clang freed: the compile's heap stays mapped otherwise (about
    40 MB of the daemon's RSS with kernel headers included, and 30 MB without)."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return  # not glibc
    trim(0)


# ---- reading counter maps ------------------------------------------------------------------

_CTYPE_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


def struct_format(ctype: Any) -> str:
    """A struct format for a BCC ctypes key (unsigned ints, or a struct of them)."""
    fields = getattr(ctype, "_fields_", None)
    if fields is None:
        return _CTYPE_FORMATS[ctypes.sizeof(ctype)]
    return "".join(struct_format(field_type) for _name, field_type, *_ in fields)


def table_raw(table: Any, value_size: int) -> tuple[bytes, bytes, int]:
    """Every key and value of a BCC table, packed back to back as raw bytes, and how many: one
    BPF_MAP_LOOKUP_BATCH call where the kernel has it for this map type, else BCC's iteration
    (two syscalls and a ctypes object per key). `value_size` is a value as the syscall returns
    it: per-CPU maps hold one copy per possible CPU."""
    key_size = ctypes.sizeof(table.Key)
    try:
        return bpfsys.lookup_batch(table.map_fd, key_size, value_size, table.max_entries)
    except OSError:
        pairs = [(bytes(key), bytes(value)) for key, value in table.items()]
        return b"".join(k for k, _v in pairs), b"".join(v for _k, v in pairs), len(pairs)


def table_items(table: Any, value_size: int) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a BCC table as raw bytes (table_raw, cut per key)."""
    key_size = ctypes.sizeof(table.Key)
    keys, values, count = table_raw(table, value_size)
    return [
        (keys[i * key_size : (i + 1) * key_size], values[i * value_size : (i + 1) * value_size])
        for i in range(count)
    ]


ASK_EVERY = 4  # an unchanged key's task is asked whether it lives at one read in this many


class CounterMap:
    """Deltas of a map of cumulative per-key counters (per-CPU copies summed).

    The whole map is read at once (table_raw). Every counter struct in bpf/llamas.h is made of
    u64 fields, so the values are read as one array of u64 words, and each field is summed over
    the CPUs' copies for every key at once (C-level `map` over strided views, not a Python loop
    per key and CPU: a host with 128 possible CPUs holds 128 copies of each value). A key whose
    totals did not change since the last read gives nothing.

    With an `owner`, keys whose owning task is gone are read one last time, then deleted from the
    map (within `ask_every` reads of their last change), so a full map means many live keys,
    not many dead ones. Evictions by the LRU are counted
    as inserts - live keys - keys we deleted.

    With a `cache` (the map's LLAMAS_CACHED slots, bpf/llamas.h), a key's count is the map's
    plus its slots', read in that order. A key that leaves its slot between the two reads is
    missed by this read and counted by the next, so a count that seems to fall is held where it
    was (never reported twice).
    """

    def __init__(self, table: Any, owner: Callable[[tuple[int, ...]], int] | None, percpu: bool = True,
                 cache: Any = None, ask_every: int = ASK_EVERY):
        self.table = table
        self.owner = owner
        self.ask_every = ask_every
        self._reads = 0
        self._key = struct.Struct("<" + struct_format(table.Key))
        if self._key.size != ctypes.sizeof(table.Key):
            raise RuntimeError(f"map key {table.Key.__name__} has padding the reader does not expect")
        leaf = getattr(table, "sLeaf", table.Leaf)  # BCC makes a per-CPU table's Leaf the array of copies
        leaf_size = ctypes.sizeof(leaf)
        if leaf_size % 8:
            raise RuntimeError(f"map value {leaf.__name__} is not made of u64 counters")
        self._width = leaf_size // 8
        # the leading fields read, the others taken to be zero: fewer may be set before the
        # first read, and widen() adds more later
        self.fields = self._width
        self._copies = bpfsys.possible_cpus() if percpu else 1
        self._value_size = leaf_size * self._copies
        self._prev: dict[tuple[int, ...], tuple[int, ...]] = {}  # key -> totals at the last read
        self.cache = cache
        self._slot = struct.Struct(f"<II{self._width}Q")  # a cache slot: u32 key, pad, the value
        if cache is not None and ctypes.sizeof(cache.sLeaf) != self._slot.size:
            raise RuntimeError(f"cache slot {cache.sLeaf.__name__} is not a u32 key and the map's value")
        self._reported: dict[tuple[int, ...], tuple[int, ...]] = {}  # cached: key -> total so far
        self._held_before: set[tuple[int, ...]] = set()  # cached: the keys in a slot at the last read
        self.deleted_total = 0
        self.live = 0

    def totals(self) -> dict[tuple[int, ...], tuple[int, ...]]:
        """Every key of the map now, with its counters summed over the CPUs' copies."""
        raw_keys, raw_values, count = table_raw(self.table, self._value_size)
        if count == 0:
            return {}
        keys = self._key.iter_unpack(raw_keys[: count * self._key.size])
        words = memoryview(raw_values[: count * self._value_size]).cast("Q")
        width, stride = self._width, self._width * self._copies
        fields: list[Any] = []
        for field_index in range(self.fields):
            summed: Any = words[field_index::stride]
            for copy in range(1, self._copies):  # per-CPU copies lie back to back in each value
                summed = map(operator.add, summed, words[copy * width + field_index :: stride])
            fields.append(summed)
        return dict(zip(keys, zip(*fields, strict=True), strict=True))

    def _read_cache(self) -> dict[tuple[int, ...], tuple[int, ...]]:
        """Each key's counts in the cache slots, every CPU's summed."""
        _keys, raw, _count = table_raw(self.cache, self._slot.size * self._copies)
        held: dict[tuple[int, ...], tuple[int, ...]] = {}
        for key, _pad, *words in self._slot.iter_unpack(raw):
            if key == 0:
                continue  # an empty slot
            del words[self.fields :]
            before = held.get((key,))
            held[(key,)] = tuple(words) if before is None else tuple(map(operator.add, before, words))
        return held

    def read(self, alive: Callable[[int], bool] = procfs.alive) -> dict[tuple[int, ...], tuple[int, ...]]:
        current = self.totals()
        prev = self._prev
        changed = [key for key, total in current.items() if prev.get(key) != total]
        if self.cache is not None:
            held = self._read_cache()
            deltas = self._cached_deltas(current, changed, held, alive)
        else:
            held = {}
            totals = [current[key] for key in changed]
            rows = self._subtract(totals, [prev.get(key) for key in changed])
            if rows is None:  # a count fell: evicted and inserted again since the last read
                rows = []
                for total, key in zip(totals, changed, strict=True):
                    before = prev.get(key)
                    delta = total if before is None else tuple(map(operator.sub, total, before))
                    rows.append(total if min(delta) < 0 else delta)
            deltas = dict(compress(zip(changed, rows, strict=True), map(any, rows)))
        if self.owner is not None:
            # A key that changed in this read had its task run in the interval: it is not asked
            # about. One that did not is asked at one read in ask_every (spread by owner), so a
            # key of a task that ended goes within that many reads, and a kill(2) is spared for
            # every busy task every read and most idle ones (a host's idle threads, a thousand).
            owner, moved, every = self.owner, set(changed), self.ask_every
            self._reads += 1
            turn = self._reads % every
            unchanged = [key for key in current if key not in moved and owner(key) % every == turn]
            for key in [key for key in unchanged if not alive(owner(key))]:
                with contextlib.suppress(KeyError):
                    del self.table[self.table.Key.from_buffer_copy(self._key.pack(*key))]
                self._forget(key, current.pop(key), held)
                self.deleted_total += 1
        self._prev = current
        self.live = len(current)
        return deltas

    def _cached_deltas(self, current: dict[tuple[int, ...], tuple[int, ...]], changed: list[tuple[int, ...]],
                       held: dict[tuple[int, ...], tuple[int, ...]],
                       alive: Callable[[int], bool]) -> dict[tuple[int, ...], tuple[int, ...]]:
        """Deltas of map + slots for the keys that can have moved: changed in the map, in a slot
        now, or in one at the last read. A key in neither keeps what was reported: it left its
        slot between the two reads (or the LRU evicted it), unless its owner is gone."""
        deltas: dict[tuple[int, ...], tuple[int, ...]] = {}
        slotted = held.keys() | self._held_before
        plain = [key for key in changed if key not in slotted]
        totals = [current[key] for key in plain]
        rows = self._subtract(totals, [self._reported.get(key) for key in plain])
        if rows is None:  # a count seems to fall (an earlier read's race): key by key
            for key, total in zip(plain, totals, strict=True):
                self._advance(key, total, deltas)
        else:
            self._reported.update(zip(plain, totals, strict=True))
            deltas.update(compress(zip(plain, rows, strict=True), map(any, rows)))
        for key in slotted:
            in_map = current.get(key)
            in_slots = held.get(key)
            if in_map is None and in_slots is None:
                if self.owner is not None and not alive(self.owner(key)):
                    self._reported.pop(key, None)
                continue
            if in_map is None:
                assert in_slots is not None
                total = in_slots
            else:
                total = in_map if in_slots is None else tuple(map(operator.add, in_map, in_slots))
            self._advance(key, total, deltas)
        self._held_before = set(held)
        return deltas

    def _subtract(self, totals: list[tuple[int, ...]],
                  befores: list[tuple[int, ...] | None]) -> list[tuple[int, ...]] | None:
        """totals - befores row by row (None: nothing before), each field subtracted for every
        row at once; None where any difference is negative (the caller goes key by key)."""
        if not totals:
            return []
        zero = (0,) * self.fields
        before_rows = [zero if b is None else b for b in befores]
        fields = [list(map(operator.sub, now, before)) for now, before in
                  zip(zip(*totals, strict=True), zip(*before_rows, strict=True), strict=True)]
        if min(map(min, fields)) < 0:
            return None
        return list(zip(*fields, strict=True))

    def _advance(self, key: tuple[int, ...], total: tuple[int, ...],
                 deltas: dict[tuple[int, ...], tuple[int, ...]]) -> None:
        before = self._reported.get(key)
        if before is None:
            delta = total
        else:
            delta = tuple(map(operator.sub, total, before))
            if min(delta) < 0:  # missed by an earlier read's race: held where it was
                delta = tuple(max(d, 0) for d in delta)
                total = tuple(map(max, total, before))
        if any(delta):
            deltas[key] = delta
        self._reported[key] = total

    def _forget(self, key: tuple[int, ...], in_map: tuple[int, ...],
                held: dict[tuple[int, ...], tuple[int, ...]]) -> None:
        """A dead key was deleted from the map: what it still has in the slots stays reported."""
        if self.cache is None:
            return
        before = self._reported.get(key)
        if key not in held or before is None:
            self._reported.pop(key, None)
            return
        self._reported[key] = tuple(max(then - gone, 0) for then, gone in zip(before, in_map, strict=True))

    def widen(self, fields: int) -> None:
        """Read the first `fields` fields of each value from now on (at least as many as before;
        the others are taken to be zero: a map whose trailing fields stay zero until some event
        the caller learns of elsewhere, like a node's first allocation). What was read so far
        stands: a field read for the first time gives everything it counted since the start."""
        fields = min(max(fields, self.fields), self._width)
        if fields == self.fields:
            return
        pad = (0,) * (fields - self.fields)
        self._prev = {key: total + pad for key, total in self._prev.items()}
        self._reported = {key: total + pad for key, total in self._reported.items()}
        self.fields = fields

    def live_keys(self) -> set[tuple[int, ...]]:
        """The keys of the last read, owners alive (dead ones were deleted by it), and with a
        cache, those still in its slots."""
        keys = set(self._prev)
        return keys | set(self._reported) if self.cache is not None else keys


class HealthCounters:
    """The per-program `health` array: map-full and drop deltas per interval."""

    def __init__(self, table: Any, maps: dict[int, CounterMap], rate: Any = None):
        self.table = table
        self.maps = maps  # inserts slot -> the map whose evictions that slot measures
        self.rate = rate  # the LLAMAS_SAMPLED `<probe>_rate` array, where the probe samples
        self._prev_lost = 0
        self._prev_drops = 0
        self._prev_estimated = 0
        self._copies = bpfsys.possible_cpus()

    def totals(self) -> list[int]:
        """Each slot summed over the CPUs, the array read in one call (a lookup a slot was
        ~0.1 ms a probe a collect through BCC)."""
        raw_keys, raw_values, count = table_raw(self.table, 8 * self._copies)
        words = memoryview(raw_values[: 8 * self._copies * count]).cast("Q")
        totals = [0] * HEALTH_SLOTS
        for index, (slot,) in enumerate(struct.iter_unpack("<I", raw_keys[: 4 * count])):
            if slot < HEALTH_SLOTS:
                totals[slot] = sum(words[index * self._copies : (index + 1) * self._copies])
        return totals

    def read(self, totals: list[int]) -> tuple[int, int, int]:
        """Deltas (map_full, drops, estimated), given totals read before the maps were."""
        lost = totals[HEALTH_PROC_FULL] + totals[HEALTH_REGION_FULL]
        for inserts_slot, counter_map in self.maps.items():
            evicted = totals[inserts_slot] - counter_map.live - counter_map.deleted_total
            lost += max(evicted, 0)
        drops = totals[HEALTH_DROPS]
        estimated = self._prev_estimated
        if self.rate is not None:
            estimated = sum(cpu.estimated for cpu in self.rate[ctypes.c_int(0)])
        result = (max(lost - self._prev_lost, 0), max(drops - self._prev_drops, 0),
                  max(estimated - self._prev_estimated, 0))
        self._prev_lost, self._prev_drops, self._prev_estimated = lost, drops, estimated
        return result


def prog_stats(fds: list[int]) -> tuple[int, int]:
    """(run count, run time ns) summed over programs, cumulative."""
    count = time_ns = 0
    for fd in fds:
        stats = bpfsys.prog_stats(fd)
        count += stats.run_cnt
        time_ns += stats.run_time_ns
    return count, time_ns
