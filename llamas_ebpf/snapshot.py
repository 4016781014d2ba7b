"""The Snapshot: what the probes saw in one interval, per process, per node and per probe.

Every face reads this one model: `observe` prints it, `--save` writes it as JSON lines, later
commands load it back, and the advisors summarise it. Counts are for the interval, not totals.

The classes are slotted stdlib dataclasses, because the probes update them on the hot path of
every collect (a thousand processes a second); pydantic validates and serialises them at the
edges (from_json/to_json), refusing unknown fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError

from llamas_ebpf import inputs
from llamas_ebpf.errors import LlamasError

SCHEMA: Final = "llamas.snapshot/v1"
CMDLINE_LIMIT = 512  # bytes of a command line a snapshot keeps


_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)  # every float finite: JSON has no NaN


@dataclass(slots=True)
class FaultCounts:
    __pydantic_config__ = _STRICT
    user: int = 0
    kernel: int = 0
    read: int = 0
    write: int = 0


@dataclass(slots=True)
class NumaCounts:
    __pydantic_config__ = _STRICT
    alloc_local: int = 0  # pages allocated on the node of the CPU the task ran on
    alloc_remote: int = 0
    alloc_pages_by_node: dict[int, int] = field(default_factory=dict)
    # hinting faults; None where the attach method in use cannot split them per process
    hint_local: int | None = None
    hint_remote: int | None = None
    hint_migrated_pages: int | None = None
    numa_task_moves: int = 0  # scheduler NUMA placement moves/swaps/sticks (fallback method)


@dataclass(slots=True)
class CpuMigrations:
    __pydantic_config__ = _STRICT
    same_node: int = 0
    cross_node: int = 0


@dataclass(slots=True)
class GpuCounts:
    __pydantic_config__ = _STRICT
    calls: dict[str, int] = field(default_factory=dict)  # CUDA symbol or DRM event -> calls
    bytes: dict[str, int] = field(default_factory=dict)  # CUDA symbol -> bytes


@dataclass(slots=True)
class Region:
    __pydantic_config__ = _STRICT
    start: int  # virtual address of the 2 MiB region
    reads: int = 0
    writes: int = 0


Heat = Literal["hot", "warm", "cold"]


@dataclass(slots=True)
class AccessRegion:
    """One region as DAMON sees it (neighbours of one heat merged), with where its pages are."""

    __pydantic_config__ = _STRICT
    start: int
    end: int
    accesses: float  # DAMON's nr_accesses per aggregation, averaged over the interval
    age_s: float  # how long its access pattern has stayed as it is
    heat: Heat
    bytes_by_node: dict[int, int] = field(default_factory=dict)  # resident bytes (pagemap, sampled)
    written_fraction: float | None = None  # of its resident pages, written in the window


@dataclass(slots=True)
class ProcessAccess:
    """How much of a process's resident memory is hot, warm and cold, per node."""

    __pydantic_config__ = _STRICT
    hot_bytes_by_node: dict[int, int] = field(default_factory=dict)
    warm_bytes_by_node: dict[int, int] = field(default_factory=dict)
    cold_bytes_by_node: dict[int, int] = field(default_factory=dict)
    regions: list[AccessRegion] = field(default_factory=list)  # the largest, by address
    written_window_s: float | None = None  # the time the written fractions cover

    @property
    def hot_bytes(self) -> int:
        return sum(self.hot_bytes_by_node.values())

    @property
    def cold_bytes(self) -> int:
        return sum(self.cold_bytes_by_node.values())


@dataclass(slots=True)
class AccessInfo:
    """How the snapshot's access figures were found, and the thresholds that sort them."""

    __pydantic_config__ = _STRICT
    method: str  # damon-vaddr, damon-paddr, damon-paddr-passive, numa-hint, per-vma, none
    scope: str  # per process, host-wide, ...
    reason: str = ""  # why not a better method
    sample_us: int | None = None
    aggr_us: int | None = None
    hot_min_accesses: float | None = None  # per aggregation, at least: hot
    cold_min_age_s: float | None = None  # no access for at least this long: cold
    kdamond_pid: int | None = None
    kdamond_owner: Literal["llamas", "other"] | None = None
    targets: int = 0  # processes monitored
    written_method: str | None = None  # soft-dirty, write-faults, or None
    written_period_s: float | None = None


@dataclass(slots=True)
class Delays:
    __pydantic_config__ = _STRICT
    """Delay accounting (taskstats), nanoseconds spent waiting in the interval."""

    cpu_ns: int = 0
    blkio_ns: int = 0
    swapin_ns: int = 0
    reclaim_ns: int = 0
    thrashing_ns: int = 0
    compaction_ns: int = 0


@dataclass(slots=True)
class ProcessSample:
    __pydantic_config__ = _STRICT
    pid: int
    comm: str
    faults: FaultCounts = field(default_factory=FaultCounts)
    numa: NumaCounts = field(default_factory=NumaCounts)
    cpu_migrations: CpuMigrations = field(default_factory=CpuMigrations)
    gpu: GpuCounts = field(default_factory=GpuCounts)
    page_migrations: dict[str, int] = field(default_factory=dict)  # reason -> pages moved
    delays: Delays | None = None
    regions: list[Region] = field(default_factory=list)
    # for the busiest processes of the interval and the ones asked for (Sensor.detail_top,
    # Sensor.detail_pids) only, from /proc:
    cpu_node: int | None = None  # the node of the CPU it last ran on
    resident_by_node: dict[int, int] | None = None  # resident pages per node (numa_maps)
    cmdline: str | None = None  # its command line, cut to CMDLINE_LIMIT bytes
    threads_off_rule: int | None = None  # threads whose CPU mask reaches outside their rule's CPUs
    access: ProcessAccess | None = None  # for the processes the access probe monitors
    age_s: float | None = None  # seconds since it started (detailed processes only)

    @property
    def total_faults(self) -> int:
        return self.faults.user + self.faults.kernel


@dataclass(slots=True)
class OtherProcesses:
    """The counts of the processes a snapshot leaves out, summed: past the busiest by each
    measure (Sensor.keep_top), not asked about, nothing but the counters below in the interval."""

    __pydantic_config__ = _STRICT
    processes: int = 0
    faults: FaultCounts = field(default_factory=FaultCounts)
    numa: NumaCounts = field(default_factory=NumaCounts)
    cpu_migrations: CpuMigrations = field(default_factory=CpuMigrations)

    @property
    def total_faults(self) -> int:
        return self.faults.user + self.faults.kernel


@dataclass(slots=True)
class NodeSample:
    __pydantic_config__ = _STRICT
    id: int
    cpus: list[int] = field(default_factory=list)
    faults: int = 0  # faults taken on this node's CPUs
    alloc_pages: int = 0  # pages allocated from this node's memory
    alloc_from_cpu_node: dict[int, int] = field(default_factory=dict)  # CPU node -> pages
    hint_faults_from_cpu_node: dict[int, int] = field(default_factory=dict)
    free_mb: int | None = None  # MemFree at the end of the interval
    # bytes of this node's memory by heat (Snapshot.access says how, and over what scope)
    hot_bytes: int | None = None
    warm_bytes: int | None = None
    cold_bytes: int | None = None


@dataclass(slots=True)
class PageMigrationTotals:
    __pydantic_config__ = _STRICT
    succeeded: int = 0
    failed: int = 0


@dataclass(slots=True)
class ProbeHealth:
    __pydantic_config__ = _STRICT
    name: str
    method: str | None  # the attach method in use, None when unavailable
    status: Literal["ok", "fallback", "unavailable"]
    reason: str = ""
    events: int | None = None  # program runs in the interval (with BPF stats on)
    run_time_ns: int | None = None
    map_full: int = 0  # entries lost to a full map (LRU evictions and failed inserts)
    drops: int = 0  # events that could not be counted for any other reason
    # events counted by sample, not one by one: past LLAMAS_EXACT_PER_TICK a jiffy on a CPU, 1 in
    # `sample_every` counts for `sample_every` (bpf/llamas.h, LLAMAS_SAMPLED)
    estimated: int = 0
    sample_every: int | None = None  # None: the probe counts every event


@dataclass(slots=True, kw_only=True)
class Snapshot:
    __pydantic_config__ = _STRICT
    schema: Literal["llamas.snapshot/v1"] = SCHEMA
    host: str
    kernel: str
    time: float  # end of the interval, seconds since the epoch
    interval_s: float
    processes: list[ProcessSample] = field(default_factory=list)
    nodes: list[NodeSample] = field(default_factory=list)
    page_migrations: dict[str, PageMigrationTotals] = field(default_factory=dict)
    system: dict[str, int] = field(default_factory=dict)  # /proc/vmstat deltas of interest
    probes: dict[str, ProbeHealth] = field(default_factory=dict)
    access: AccessInfo | None = None
    # the processes left out of `processes` (None: none was), their counts summed; a total over
    # processes is a total over `counted`
    others: OtherProcesses | None = None

    def process(self, pid: int) -> ProcessSample | None:
        return next((p for p in self.processes if p.pid == pid), None)

    @property
    def counted(self) -> list[ProcessSample | OtherProcesses]:
        """Every process's counts: the processes kept, and the others summed."""
        return [*self.processes, self.others] if self.others is not None else list(self.processes)

    def to_json(self) -> str:
        return _ADAPTER.dump_json(self).decode()

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return _ADAPTER.validate_json(text)


_ADAPTER = TypeAdapter(Snapshot)


HOST_SCHEMA = "llamas.host/v1"  # a line that records the host (llamas_ebpf/devices/recording.py)


def save(snapshots: list[Snapshot], path: Path, header: str | None = None) -> None:
    """Append snapshots to a JSON-lines file, after `header` (a host record) when given."""
    try:
        with open(path, "a") as out:
            if header is not None:
                out.write(header + "\n")
            for snap in snapshots:
                out.write(snap.to_json() + "\n")
    except OSError as exc:
        raise LlamasError(f"{path}: {exc.strerror}") from None


def load(path: Path, hosts: list[dict[str, Any]] | None = None) -> Iterator[Snapshot]:
    """Snapshots from a file written by `llamas observe --save` (JSON lines). Host records are
    handed to `hosts` (in file order), when given, and otherwise skipped."""
    lines = inputs.read_text(path, inputs.SNAPSHOT_BYTES).splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.startswith(f'{{"schema": "{HOST_SCHEMA}"'):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise LlamasError(f"{path}:{number}: not a llamas host record ({exc})") from None
            if isinstance(record, dict) and record.get("schema") == HOST_SCHEMA:
                if hosts is not None:
                    hosts.append(record)
                continue
        try:
            yield Snapshot.from_json(line)
        except (ValidationError, json.JSONDecodeError, RecursionError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else {"msg": str(exc)}
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise LlamasError(
                f"{path}:{number}: not a llamas snapshot ({where + ': ' if where else ''}{first['msg']})"
            ) from None
