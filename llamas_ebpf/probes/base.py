"""What every probe shares: attach chains, compiling through BCC, and reading counter maps.

A probe has an ordered chain of attach methods. `plan` decides, from the capabilities alone,
which methods can be tried and why the others cannot (a pure function, so unit tests can force
capability sets); `attach` then tries them in order and the first that loads wins. The method
chosen and every reason for falling back end up in the probe's ProbeHealth.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llamas_ebpf.kernel import bpfsys, procfs
from llamas_ebpf.kernel.features import Capabilities
from llamas_ebpf.kernel.nodes import PfnRange
from llamas_ebpf.snapshot import ProbeHealth, ProcessSample

# bpf/llamas.h, mirrored: the limits and the slots of each program's `health` array.
MAX_NODES = 16  # LLAMAS_MAX_NODES
REGION_SHIFT = 21  # LLAMAS_REGION_SHIFT: 2 MiB regions
HEALTH_SLOTS = 5
HEALTH_PROC_INSERTS, HEALTH_PROC_FULL, HEALTH_REGION_INSERTS, HEALTH_REGION_FULL, HEALTH_DROPS = (
    range(HEALTH_SLOTS)
)


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


@dataclass
class ProbeOptions:
    bpf_dir: Path
    pids: list[int] = field(default_factory=list)
    cgroup_ids: list[int] = field(default_factory=list)
    cuda_lib: Path | None = None
    cpu_to_node: dict[int, int] = field(default_factory=dict)
    pfn_ranges: list[PfnRange] = field(default_factory=list)
    taskstats_top: int = 20

    @property
    def filtered(self) -> bool:
        return bool(self.pids or self.cgroup_ids)


class SnapshotBuilder:
    """Where probes put what they read in one interval; the Sensor turns it into a Snapshot."""

    def __init__(self) -> None:
        self.processes: dict[int, ProcessSample] = {}
        self.node_faults: dict[int, int] = {}
        self.alloc_matrix: dict[tuple[int, int], int] = {}  # (cpu node, memory node) -> pages
        self.hint_matrix: dict[tuple[int, int], int] = {}
        self.page_migrations: dict[str, tuple[int, int]] = {}  # reason -> (succeeded, failed)
        self.system: dict[str, int] = {}
        self.comms: dict[int, str] = {}

    def process(self, pid: int) -> ProcessSample:
        sample = self.processes.get(pid)
        if sample is None:
            sample = ProcessSample(pid=pid, comm="")
            self.processes[pid] = sample
        return sample


class Probe(ABC):
    name: ClassVar[str]
    chain: ClassVar[tuple[AttachMethod, ...]]

    def __init__(self, options: ProbeOptions) -> None:
        self.options = options
        self.method: str | None = None
        self.bpf: Any = None
        self._health_prev: dict[str, int] = {}

    def attach(self, caps: Capabilities) -> ProbeHealth:
        reasons: list[str] = []
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
            self.method = method.name
            status = "ok" if position == 0 else "fallback"
            return ProbeHealth(name=self.name, method=method.name, status=status,
                               reason="; ".join(reasons))
        return ProbeHealth(name=self.name, method=None, status="unavailable",
                           reason="; ".join(reasons) or "no attach method")

    @abstractmethod
    def start(self, method: str) -> None:
        """Compile, load and attach for `method`; raise on any failure."""

    @abstractmethod
    def collect(self, out: SnapshotBuilder) -> None:
        """Add what changed since the last call to `out`."""

    def collect_with_health(self, out: SnapshotBuilder) -> tuple[int, int]:
        """collect(), and the (map_full, drops) of the interval.

        The health totals are read before the maps: an insert that lands between the two
        reads is then in the map but not yet in the insert count, never the other way round,
        which would look like an eviction.
        """
        counters: HealthCounters | None = getattr(self, "health_counters", None)
        totals = counters.totals() if counters is not None else None
        self.collect(out)
        return counters.read(totals) if counters is not None and totals is not None else (0, 0)

    def program_fds(self) -> list[int]:
        if self.bpf is None:
            return []
        return [fn.fd for fn in self.bpf.funcs.values() if getattr(fn, "fd", None) is not None]

    def close(self) -> None:
        if self.bpf is not None:
            with contextlib.suppress(Exception):
                self.bpf.cleanup()
            self.bpf = None


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


def compile_bpf(bpf_dir: Path, source: str, cflags: list[str] | None = None, **attach: Any) -> Any:
    """Compile and load bpf/<source> through BCC. Errors carry clang's last error line."""
    from bcc import BPF  # Debian's python3-bpfcc; imported late so unit tests run without it

    path = bpf_dir / source
    flags = [f"-I{bpf_dir}", *(cflags or [])]
    with _captured_stderr() as stderr:
        try:
            return BPF(src_file=str(path).encode(), cflags=flags, **attach)
        except Exception as exc:
            errors = [line for line in stderr().splitlines() if "error:" in line]
            detail = f" ({errors[0].strip()})" if errors else ""
            raise RuntimeError(f"{one_line(exc)}{detail}") from None


# ---- reading counter maps ------------------------------------------------------------------

def _flatten(value: Any) -> tuple[int, ...]:
    """A ctypes leaf as a tuple of ints (arrays spread out), for summing and subtracting."""
    if isinstance(value, int):
        return (value,)
    if isinstance(value, ctypes._SimpleCData):
        return (int(value.value),)
    if isinstance(value, ctypes.Array):
        out: list[int] = []
        for item in value:
            out.extend(_flatten(item))
        return tuple(out)
    out = []
    for name, *_ in value._fields_:
        out.extend(_flatten(getattr(value, name)))
    return tuple(out)


def key_tuple(key: Any) -> tuple[int, ...]:
    return _flatten(key)


def _u64_words(value: Any, percpu: bool) -> tuple[int, ...]:
    """A counter value as a tuple of ints, per-CPU copies summed.

    Every counter struct in bpf/llamas.h is made of u64 fields only, so the ctypes buffer is
    read as u64 words directly; this is the hot loop of a collect with many processes.
    """
    if isinstance(value, int):
        return (value,)
    if isinstance(value, list):  # BCC hands per-CPU integer leaves as a list of ints
        return (sum(value),)
    words = memoryview(bytes(value)).cast("Q")
    if not percpu:
        return tuple(words)
    width = ctypes.sizeof(value._type_) // 8
    return tuple(sum(words[column::width]) for column in range(width))


class CounterMap:
    """Deltas of a map of cumulative per-key counters (per-CPU values are summed).

    Keys whose owning task is gone are read one last time, then deleted from the map, so a full
    map means many live keys, not many dead ones. Evictions by the LRU are counted as
    inserts - live keys - keys we deleted.
    """

    def __init__(self, table: Any, owner: Callable[[tuple[int, ...]], int], percpu: bool = True):
        self.table = table
        self.owner = owner
        self.percpu = percpu
        self._prev: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.deleted_total = 0
        self.live = 0

    def read(self) -> dict[tuple[int, ...], tuple[int, ...]]:
        deltas: dict[tuple[int, ...], tuple[int, ...]] = {}
        current: dict[tuple[int, ...], tuple[int, ...]] = {}
        raw_keys: dict[tuple[int, ...], Any] = {}
        for raw_key, raw_value in self.table.items():
            key = key_tuple(raw_key)
            value = _u64_words(raw_value, self.percpu)
            current[key] = value
            raw_keys[key] = raw_key
            before = self._prev.get(key)
            if before is None or any(c < b for c, b in zip(value, before, strict=True)):
                delta = value  # new, or evicted and inserted again
            else:
                delta = tuple(c - b for c, b in zip(value, before, strict=True))
            if any(delta):
                deltas[key] = delta
        alive: dict[int, bool] = {}
        for key, raw_key in raw_keys.items():
            pid = self.owner(key)
            if pid not in alive:
                alive[pid] = procfs.alive(pid)
            if not alive[pid]:
                with contextlib.suppress(KeyError):
                    del self.table[raw_key]
                del current[key]
                self.deleted_total += 1
        self._prev = current
        self.live = len(current)
        return deltas

    def live_keys(self) -> set[tuple[int, ...]]:
        """The keys of the last read, owners alive (dead ones were deleted by it)."""
        return set(self._prev)


class HealthCounters:
    """The per-program `health` array: map-full and drop deltas per interval."""

    def __init__(self, table: Any, maps: dict[int, CounterMap]):
        self.table = table
        self.maps = maps  # inserts slot -> the map whose evictions that slot measures
        self._prev_lost = 0
        self._prev_drops = 0

    def totals(self) -> list[int]:
        return [sum(self.table[ctypes.c_int(slot)]) for slot in range(HEALTH_SLOTS)]

    def read(self, totals: list[int]) -> tuple[int, int]:
        """Deltas, given totals read before the maps were."""
        lost = totals[HEALTH_PROC_FULL] + totals[HEALTH_REGION_FULL]
        for inserts_slot, counter_map in self.maps.items():
            evicted = totals[inserts_slot] - counter_map.live - counter_map.deleted_total
            lost += max(evicted, 0)
        drops = totals[HEALTH_DROPS]
        result = (max(lost - self._prev_lost, 0), max(drops - self._prev_drops, 0))
        self._prev_lost, self._prev_drops = lost, drops
        return result


def prog_stats(fds: list[int]) -> tuple[int, int]:
    """(run count, run time ns) summed over programs, cumulative."""
    count = time_ns = 0
    for fd in fds:
        stats = bpfsys.prog_stats(fd)
        count += stats.run_cnt
        time_ns += stats.run_time_ns
    return count, time_ns
