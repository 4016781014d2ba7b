"""What an advisor reads about an observation window: the snapshots of the window folded into one
line per process and one per node, ranked by activity. The facts only /proc has (command line,
the CPU a process runs on, its resident pages per node) are in the snapshots already, for the
processes the Sensor enriched, so a window of saved snapshots reads like a live one. The metrics
are those of llamas_ebpf.metrics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from llamas_ebpf import metrics
from llamas_ebpf.snapshot import ProcessSample, Snapshot


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
    # the access probe's last figures for it (bytes per node), where it was monitored
    hot_bytes_by_node: dict[int, int] = field(default_factory=dict)
    warm_bytes_by_node: dict[int, int] = field(default_factory=dict)
    cold_bytes_by_node: dict[int, int] = field(default_factory=dict)
    hot_written_fraction: float | None = None  # of its hot resident bytes, written in the window
    access_seen: bool = False  # the access probe monitored it in the window
    age_s: float | None = None  # seconds it had run at its last sample, where detailed
    intervals: int = 0  # intervals of the window it appeared in
    busy_intervals: int = 0  # of those, the busy ones (metrics.busy_interval)

    @classmethod
    def of(cls, sample: ProcessSample) -> ProcSummary:
        """One interval's sample on its own."""
        summary = cls(sample.pid, sample.comm)
        summary.add(sample)
        return summary

    def add(self, s: ProcessSample) -> None:
        """Fold one more interval's sample of this process in."""
        self.comm = s.comm
        if s.cmdline is not None:
            self.cmdline = s.cmdline
        if s.cpu_node is not None:
            self.cpu_node = s.cpu_node
        if s.age_s is not None:
            self.age_s = s.age_s
        if s.resident_by_node is not None:
            self.resident_by_node = dict(s.resident_by_node)
        self.faults += s.faults.user + s.faults.kernel
        self.read_faults += s.faults.read
        self.write_faults += s.faults.write
        self.alloc_local += s.numa.alloc_local
        self.alloc_remote += s.numa.alloc_remote
        for node_id, pages in s.numa.alloc_pages_by_node.items():
            self.alloc_by_node[node_id] = self.alloc_by_node.get(node_id, 0) + pages
        self.hint_local += s.numa.hint_local or 0
        self.hint_remote += s.numa.hint_remote or 0
        self.cross_node_moves += s.cpu_migrations.cross_node
        self.gpu_calls += sum(s.gpu.calls.values())
        self.gpu_bytes += sum(s.gpu.bytes.values())
        for region in s.regions:
            self.region_reads += region.reads
            self.region_writes += region.writes
        self.intervals += 1
        events = s.faults.user + s.faults.kernel + s.numa.alloc_local + s.numa.alloc_remote
        events += (s.numa.hint_local or 0) + (s.numa.hint_remote or 0)
        hot_now = sum(s.access.hot_bytes_by_node.values()) if s.access is not None else 0
        if metrics.busy_interval(events, hot_now):
            self.busy_intervals += 1
        if s.access is not None:
            self.access_seen = True
            self.hot_bytes_by_node = dict(s.access.hot_bytes_by_node)
            self.warm_bytes_by_node = dict(s.access.warm_bytes_by_node)
            self.cold_bytes_by_node = dict(s.access.cold_bytes_by_node)
            weighed = [(r.written_fraction, sum(r.bytes_by_node.values())) for r in s.access.regions
                       if r.heat == "hot" and r.written_fraction is not None]
            total = sum(size for _f, size in weighed)
            if total:
                self.hot_written_fraction = sum(f * size for f, size in weighed) / total

    @property
    def hot_bytes(self) -> int:
        return sum(self.hot_bytes_by_node.values())

    @property
    def cold_bytes(self) -> int:
        return sum(self.cold_bytes_by_node.values())

    def hot_bytes_off(self, node: int) -> int:
        """Hot bytes on nodes other than `node`."""
        return sum(size for n, size in self.hot_bytes_by_node.items() if n != node)

    @property
    def busy(self) -> bool:
        """Busy enough in the window to act or report on: events, or hot memory."""
        return self.activity >= metrics.BUSY_EVENTS or self.hot_bytes >= metrics.BUSY_HOT_BYTES

    @property
    def activity(self) -> int:
        """Events in the window; what ranks processes."""
        return self.faults + self.alloc_local + self.alloc_remote + self.hint_local + self.hint_remote

    @property
    def remote_alloc_fraction(self) -> float:
        return metrics.remote_alloc_fraction(self.alloc_local, self.alloc_remote)

    @property
    def remote_hint_fraction(self) -> float:
        return metrics.remote_hint_fraction(self.hint_local, self.hint_remote)

    @property
    def write_fraction(self) -> float:
        """Writes among the faults, region counts first (they cover managed processes)."""
        if self.region_reads + self.region_writes:
            return metrics.write_fraction(self.region_reads, self.region_writes)
        return metrics.write_fraction(self.read_faults, self.write_faults)

    @property
    def resident_pages(self) -> int:
        return sum(self.resident_by_node.values())

    @property
    def remote_resident_fraction(self) -> float:
        return metrics.off_node_fraction(self.resident_by_node, self.cpu_node) or 0.0

    @property
    def remote_fraction(self) -> float:
        """The worst of the three: what makes a colocate rule and a remote-memory finding."""
        return max(self.remote_alloc_fraction, self.remote_hint_fraction, self.remote_resident_fraction)

    @property
    def judged_remote_fraction(self) -> float | None:
        """What the run loop's revert check compares (metrics.judged_remote_fraction)."""
        return metrics.judged_remote_fraction(self.alloc_local, self.alloc_remote, self.hint_local,
                                              self.hint_remote, self.resident_by_node, self.cpu_node)

    @property
    def pages_by_node(self) -> dict[int, int]:
        """Where its memory is: resident pages where known, else where its allocations went."""
        return self.resident_by_node or self.alloc_by_node

    def to_dict(self) -> dict[str, Any]:
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
    processes: list[ProcSummary]  # busiest first (events, and hot pages counted as events)
    nodes: list[NodeSummary]
    system: dict[str, int]
    probes: dict[str, str]  # probe -> method or why unavailable
    access: dict[str, Any] | None = None  # how access was seen (the last Snapshot.access), thresholds
    left_out: int = 0  # the most processes one snapshot summed as others (not among its busiest)

    def top(self, k: int) -> list[ProcSummary]:
        return self.processes[:k]

    def process(self, pid: int) -> ProcSummary | None:
        return next((p for p in self.processes if p.pid == pid), None)


_ACCESS_KEYS = ("method", "scope", "hot_min_accesses", "cold_min_age_s", "written_method")


def summarize(snapshots: Iterable[Snapshot]) -> WindowSummary:
    """Fold snapshots into a window."""
    procs: dict[int, ProcSummary] = {}
    nodes: dict[int, NodeSummary] = {}
    system: dict[str, int] = {}
    seconds, host, kernel = 0.0, "", ""
    probes: dict[str, str] = {}
    access: dict[str, Any] | None = None
    left_out = 0
    for snap in snapshots:
        if snap.others is not None:
            left_out = max(left_out, snap.others.processes)
        if snap.access is not None:
            access = {k: v for k, v in asdict(snap.access).items() if k in _ACCESS_KEYS and v is not None}
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
            p.add(s)
    # a hot page counts as much as a fault: a steady-state process takes none and is busy all the same
    ranked = sorted(procs.values(),
                    key=lambda p: (-(p.activity + p.hot_bytes // 4096), -p.gpu_calls, p.pid))
    return WindowSummary(host=host, kernel=kernel, seconds=round(seconds, 3), process_count=len(procs),
                         processes=ranked, nodes=[nodes[k] for k in sorted(nodes)], system=system,
                         probes=probes, access=access, left_out=left_out)
