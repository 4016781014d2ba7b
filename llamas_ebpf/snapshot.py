"""The Snapshot: what the probes saw in one interval, per process, per node and per probe.

Every face reads this one model: `observe` prints it, `--save` writes it as JSON lines, later
commands load it back, and the advisors summarise it. Counts are for the interval, not totals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llamas_ebpf.errors import LlamasError

SCHEMA = "llamas.snapshot/v1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultCounts(_Model):
    user: int = 0
    kernel: int = 0
    read: int = 0
    write: int = 0


class NumaCounts(_Model):
    alloc_local: int = 0  # pages allocated on the node of the CPU the task ran on
    alloc_remote: int = 0
    alloc_pages_by_node: dict[int, int] = Field(default_factory=dict)
    # hinting faults; None where the attach method in use cannot split them per process
    hint_local: int | None = None
    hint_remote: int | None = None
    hint_migrated_pages: int | None = None
    numa_task_moves: int = 0  # scheduler NUMA placement moves/swaps/sticks (fallback method)


class CpuMigrations(_Model):
    same_node: int = 0
    cross_node: int = 0


class GpuCounts(_Model):
    calls: dict[str, int] = Field(default_factory=dict)  # CUDA symbol or DRM event -> calls
    bytes: dict[str, int] = Field(default_factory=dict)  # CUDA symbol -> bytes


class Region(_Model):
    start: int  # virtual address of the 2 MiB region
    reads: int = 0
    writes: int = 0


class Delays(_Model):
    """Delay accounting (taskstats), nanoseconds spent waiting in the interval."""

    cpu_ns: int = 0
    blkio_ns: int = 0
    swapin_ns: int = 0
    reclaim_ns: int = 0
    thrashing_ns: int = 0
    compaction_ns: int = 0


class ProcessSample(_Model):
    pid: int
    comm: str
    faults: FaultCounts = Field(default_factory=FaultCounts)
    numa: NumaCounts = Field(default_factory=NumaCounts)
    cpu_migrations: CpuMigrations = Field(default_factory=CpuMigrations)
    gpu: GpuCounts = Field(default_factory=GpuCounts)
    page_migrations: dict[str, int] = Field(default_factory=dict)  # reason -> pages moved
    delays: Delays | None = None
    regions: list[Region] = Field(default_factory=list)

    @property
    def total_faults(self) -> int:
        return self.faults.user + self.faults.kernel


class NodeSample(_Model):
    id: int
    cpus: list[int] = Field(default_factory=list)
    faults: int = 0  # faults taken on this node's CPUs
    alloc_pages: int = 0  # pages allocated from this node's memory
    alloc_from_cpu_node: dict[int, int] = Field(default_factory=dict)  # CPU node -> pages
    hint_faults_from_cpu_node: dict[int, int] = Field(default_factory=dict)


class PageMigrationTotals(_Model):
    succeeded: int = 0
    failed: int = 0


class ProbeHealth(_Model):
    name: str
    method: str | None  # the attach method in use, None when unavailable
    status: Literal["ok", "fallback", "unavailable"]
    reason: str = ""
    events: int | None = None  # program runs in the interval (with BPF stats on)
    run_time_ns: int | None = None
    map_full: int = 0  # entries lost to a full map (LRU evictions and failed inserts)
    drops: int = 0  # events that could not be counted for any other reason


class Snapshot(_Model):
    schema_: Literal["llamas.snapshot/v1"] = Field(default=SCHEMA, alias="schema")
    host: str
    kernel: str
    time: float  # end of the interval, seconds since the epoch
    interval_s: float
    processes: list[ProcessSample] = Field(default_factory=list)
    nodes: list[NodeSample] = Field(default_factory=list)
    page_migrations: dict[str, PageMigrationTotals] = Field(default_factory=dict)
    system: dict[str, int] = Field(default_factory=dict)  # /proc/vmstat deltas of interest
    probes: dict[str, ProbeHealth] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def process(self, pid: int) -> ProcessSample | None:
        return next((p for p in self.processes if p.pid == pid), None)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return cls.model_validate_json(text)


def save(snapshots: list[Snapshot], path: Path) -> None:
    with open(path, "a") as out:
        for snap in snapshots:
            out.write(snap.to_json() + "\n")


def load(path: Path) -> Iterator[Snapshot]:
    """Snapshots from a file written by `llamas observe --save` (JSON lines)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise LlamasError(f"{path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield Snapshot.from_json(line)
        except (ValidationError, json.JSONDecodeError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else {"msg": str(exc)}
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise LlamasError(
                f"{path}:{number}: not a llamas snapshot ({where + ': ' if where else ''}{first['msg']})"
            ) from None
