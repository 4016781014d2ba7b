"""What an advisor reads about an observation window: the snapshots of the window folded into one
line per process and one per node, ranked by activity, with the facts only /proc has (command
line, the CPU a process runs on, its resident pages per node) added for the busiest few."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from llamas_ebpf.kernel import mempolicy, procfs
from llamas_ebpf.snapshot import Snapshot


@dataclass(slots=True)
class ProcSummary:
    pid: int
    comm: str
    cmdline: str = ""
    faults: int = 0
    read_faults: int = 0
    write_faults: int = 0
    alloc_local: int = 0
    alloc_remote: int = 0
    alloc_by_node: dict[int, int] = field(default_factory=dict)
    hint_local: int = 0
    hint_remote: int = 0
    cross_node_moves: int = 0
    gpu_calls: int = 0
    gpu_bytes: int = 0
    region_reads: int = 0
    region_writes: int = 0
    cpu_node: int | None = None  # the node of the CPU it last ran on
    resident_by_node: dict[int, int] = field(default_factory=dict)  # pages, from numa_maps

    @property
    def activity(self) -> int:
        """Events in the window; what ranks processes."""
        return self.faults + self.alloc_local + self.alloc_remote + self.hint_local + self.hint_remote

    @property
    def remote_alloc_fraction(self) -> float:
        total = self.alloc_local + self.alloc_remote
        return self.alloc_remote / total if total else 0.0

    @property
    def remote_hint_fraction(self) -> float:
        total = self.hint_local + self.hint_remote
        return self.hint_remote / total if total else 0.0

    @property
    def write_fraction(self) -> float:
        """Writes among the faults, region counts first (they cover managed processes)."""
        reads, writes = self.region_reads, self.region_writes
        if reads + writes == 0:
            reads, writes = self.read_faults, self.write_faults
        return writes / (reads + writes) if reads + writes else 0.0

    @property
    def resident_pages(self) -> int:
        return sum(self.resident_by_node.values())

    @property
    def remote_resident_fraction(self) -> float:
        """Resident pages on other nodes than its CPU's: where its memory is, not how it got there
        (with NUMA balancing off nothing else tells that a process reads memory far away)."""
        total = self.resident_pages
        if self.cpu_node is None or not total:
            return 0.0
        return 1.0 - self.resident_by_node.get(self.cpu_node, 0) / total

    def to_dict(self) -> dict:
        out = asdict(self)
        out["remote_alloc_fraction"] = round(self.remote_alloc_fraction, 3)
        out["remote_hint_fraction"] = round(self.remote_hint_fraction, 3)
        out["remote_resident_fraction"] = round(self.remote_resident_fraction, 3)
        out["write_fraction"] = round(self.write_fraction, 3)
        return out


@dataclass(slots=True)
class NodeSummary:
    id: int
    faults: int = 0
    alloc_pages: int = 0
    hint_local: int = 0  # hinting faults by CPUs of this node on this node's memory
    hint_remote_in: int = 0  # hinting faults on this node's memory by other nodes' CPUs


@dataclass(slots=True)
class WindowSummary:
    host: str
    kernel: str
    seconds: float
    process_count: int
    processes: list[ProcSummary]  # busiest first
    nodes: list[NodeSummary]
    system: dict[str, int]
    probes: dict[str, str]  # probe -> method or why unavailable

    def top(self, k: int) -> list[ProcSummary]:
        return self.processes[:k]

    def process(self, pid: int) -> ProcSummary | None:
        return next((p for p in self.processes if p.pid == pid), None)


def summarize(snapshots: Iterable[Snapshot], enrich: int = 32, cpu_to_node: dict[int, int] | None = None,
              read_proc: bool = True) -> WindowSummary:
    """Fold snapshots into a window. The `enrich` busiest processes get /proc facts (when
    `read_proc`, i.e. live); the rest keep only what the probes counted."""
    procs: dict[int, ProcSummary] = {}
    nodes: dict[int, NodeSummary] = {}
    system: dict[str, int] = {}
    seconds, host, kernel, probes = 0.0, "", "", {}
    for snap in snapshots:
        seconds += snap.interval_s
        host, kernel = snap.host, snap.kernel
        probes = {name: h.method or f"unavailable: {h.reason}" for name, h in snap.probes.items()}
        for key, value in snap.system.items():
            system[key] = system.get(key, 0) + value
        for node in snap.nodes:
            n = nodes.get(node.id)
            if n is None:
                n = nodes[node.id] = NodeSummary(node.id)
            n.faults += node.faults
            n.alloc_pages += node.alloc_pages
            for cpu_node, count in node.hint_faults_from_cpu_node.items():
                if cpu_node == node.id:
                    n.hint_local += count
                else:
                    n.hint_remote_in += count
        for s in snap.processes:
            p = procs.get(s.pid)
            if p is None:
                p = procs[s.pid] = ProcSummary(s.pid, s.comm)
            p.comm = s.comm
            if s.cpu_node is not None:
                p.cpu_node = s.cpu_node
            if s.resident_by_node is not None:
                p.resident_by_node = dict(s.resident_by_node)
            p.faults += s.faults.user + s.faults.kernel
            p.read_faults += s.faults.read
            p.write_faults += s.faults.write
            p.alloc_local += s.numa.alloc_local
            p.alloc_remote += s.numa.alloc_remote
            for node_id, pages in s.numa.alloc_pages_by_node.items():
                p.alloc_by_node[node_id] = p.alloc_by_node.get(node_id, 0) + pages
            p.hint_local += s.numa.hint_local or 0
            p.hint_remote += s.numa.hint_remote or 0
            p.cross_node_moves += s.cpu_migrations.cross_node
            p.gpu_calls += sum(s.gpu.calls.values())
            p.gpu_bytes += sum(s.gpu.bytes.values())
            for region in s.regions:
                p.region_reads += region.reads
                p.region_writes += region.writes
    ranked = sorted(procs.values(), key=lambda p: (-p.activity, -p.gpu_calls, p.pid))
    if read_proc:
        for p in ranked[:enrich]:
            p.cmdline = procfs.cmdline(p.pid, limit=512)
            with contextlib.suppress(OSError, ValueError, IndexError):
                cpu = procfs.stat(p.pid).processor
                if cpu_to_node is not None:
                    p.cpu_node = cpu_to_node.get(cpu)
            with contextlib.suppress(OSError):
                p.resident_by_node = mempolicy.pages_per_node(p.pid)
    return WindowSummary(host=host, kernel=kernel, seconds=round(seconds, 3), process_count=len(procs),
                         processes=ranked, nodes=[nodes[k] for k in sorted(nodes)], system=system,
                         probes=probes)
