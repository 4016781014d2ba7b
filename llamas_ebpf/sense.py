"""The Sensor: attaches every probe through its chain and turns their maps into one Snapshot per
interval. Sensing only: it decides nothing and changes nothing but the probes it loads (and,
while it runs, kernel.task_delayacct, which TaskStatsProbe puts back).

The Sensor owns /proc as well: the facts only /proc has (the node of the CPU a process runs on,
its resident pages per node, its command line, its threads outside their rule's CPUs, each
node's free memory) go into the Snapshot here and nowhere else, so every consumer (the advisors,
the run loop, `top`, `audit`, a saved file read back later) sees the same fields. `paced` is the
one loop that takes a snapshot every interval."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import heapq
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from llamas_ebpf import metrics
from llamas_ebpf.errors import LlamasError
from llamas_ebpf.kernel import bpfsys, features, mempolicy, mounts, nodes, procfs
from llamas_ebpf.paths import Paths
from llamas_ebpf.probes import bundle
from llamas_ebpf.probes.access import AccessProbe
from llamas_ebpf.probes.base import Probe, ProbeOptions, SnapshotBuilder, prog_stats
from llamas_ebpf.probes.cpu_migrate import CpuMigrateProbe
from llamas_ebpf.probes.cuda import CudaProbe
from llamas_ebpf.probes.faults import FaultsProbe
from llamas_ebpf.probes.gpu_fence import GpuFenceProbe
from llamas_ebpf.probes.numa_alloc import NumaAllocProbe
from llamas_ebpf.probes.numa_hint import NumaHintProbe
from llamas_ebpf.probes.page_migrate import PageMigrateProbe
from llamas_ebpf.probes.taskstats import TaskStatsProbe
from llamas_ebpf.snapshot import (
    CMDLINE_LIMIT,
    AccessInfo,
    AccessRegion,
    NodeSample,
    PageMigrationTotals,
    ProbeHealth,
    ProcessSample,
    Snapshot,
)

PROBES: tuple[type[Probe], ...] = (
    FaultsProbe,
    NumaAllocProbe,
    NumaHintProbe,
    PageMigrateProbe,
    CpuMigrateProbe,
    CudaProbe,
    GpuFenceProbe,
    AccessProbe,  # after the fault counters: it watches the busiest processes they found
    TaskStatsProbe,  # last: it asks about the busiest processes the others found
)
# numa_maps of a busy process not asked about (detail_top) is read again at most this often while
# its faults in the interval stay under RESIDENT_CHURN of the pages it had: pages come and go by
# faults (NUMA hinting faults included), and under load the kernel's walk costs ~0.3 ms a process,
# a third of a 1,000-process collect's fixed cost at 16 a second. Asked-about ones (detail_pids,
# the daemon's managed processes) are read every time.
RESIDENT_CHURN = 0.05
RESIDENT_REFRESH_S = 5.0
# a process among the busiest (detail_top) in the last interval stays among them until others
# fault this many times more: the busiest do not flap on noise (a `top` row would lose its /proc
# columns), and a process kept keeps its numa_maps figure (above). So that it can, a snapshot
# keeps the last interval's busiest (where they counted anything), past keep_top.
DETAIL_STAY = 1.25
VMSTAT_KEYS = (
    "pgfault",
    "numa_hit",
    "numa_miss",
    "numa_local",
    "numa_other",
    "numa_hint_faults",
    "numa_hint_faults_local",
    "numa_pages_migrated",
    "pgmigrate_success",
    "pgmigrate_fail",
    "pgdemote_kswapd",
    "pgpromote_success",
)


def require_bpf(caps: features.Capabilities) -> None:
    """Refuse, in one line, where no probe could ever load."""
    if not caps.root.available:
        raise LlamasError(caps.root.reason)
    if not caps.bpf.available:
        raise LlamasError(f"BPF is not usable here: {caps.bpf.reason}")
    if not caps.headers.available:
        raise LlamasError(caps.headers.reason)


def cgroup_id(path: Path) -> int:
    """A cgroup v2 id is the inode number of its directory."""
    full = path if path.is_absolute() else Path("/sys/fs/cgroup") / path
    try:
        return os.stat(full).st_ino
    except OSError as exc:
        raise LlamasError(f"cgroup {full}: {exc.strerror}") from None


def probe_options(pids: list[int] | None = None, cgroups: list[Path] | None = None,
                  cuda_lib: Path | None = None, bpf_dir: Path | None = None) -> ProbeOptions:
    return ProbeOptions(
        bpf_dir=bpf_dir or Paths.from_env().bpf_dir,
        pids=list(pids or []),
        cgroup_ids=[cgroup_id(p) for p in cgroups or []],
        cuda_lib=cuda_lib,
        cpu_to_node=nodes.cpu_to_node(),
        pfn_ranges=nodes.pfn_ranges(),
    )


def program_text(only: set[str] | None = None, pids: list[int] | None = None,
                 cgroups: list[Path] | None = None, cuda_lib: Path | None = None) -> str:
    """The BPF C a Sensor with these arguments would load, each probe under its first method the
    capabilities allow, without loading it (bcc's --ebpf)."""
    caps = features.probe()
    require_bpf(caps)
    options = probe_options(pids, cgroups, cuda_lib)
    chosen = [cls(options) for cls in PROBES if only is None or cls.name in only]
    return bundle.source_text(chosen, caps, options.bpf_dir)


class Sensor:
    def __init__(
        self,
        pids: list[int] | None = None,
        cgroups: list[Path] | None = None,
        cuda_lib: Path | None = None,
        bpf_dir: Path | None = None,
        bpf_stats: bool = False,
        only: set[str] | None = None,
        detail_top: int = 16,
        rule_cpus: Callable[[int], set[int] | None] | None = None,
        access_targets: int | None = None,
        soft_dirty: bool | None = None,
        keep_top: int | None = metrics.KEEP_TOP,
    ) -> None:
        """`detail_top`: the busiest processes of each interval that get the /proc facts;
        `detail_pids` (settable) get them too, in every snapshot, busy or not. `rule_cpus`: the
        CPUs of the rule that takes a process (None: none), for its threads_off_rule.
        `keep_top`: the processes a snapshot keeps by each measure (metrics.KEEP_TOP; None: all, as with
        `pids` or `cgroups`, which keep every process they name)."""
        if os.geteuid() == 0:
            mounts.ensure_mounted()
        self.caps = features.probe()
        require_bpf(self.caps)
        self.options = probe_options(pids, cgroups, cuda_lib, bpf_dir)
        if access_targets is None or soft_dirty is None:
            from llamas_ebpf import config

            settings = config.load().access
            access_targets = settings.targets if access_targets is None else access_targets
            soft_dirty = settings.soft_dirty if soft_dirty is None else soft_dirty
        self.options.access_targets = access_targets
        self.options.soft_dirty = soft_dirty
        self.cpu_to_node = self.options.cpu_to_node
        self.node_ids = nodes.node_ids()
        self.detail_top = detail_top
        self.keep_top = None if self.options.filtered else keep_top
        self.rule_cpus = rule_cpus
        self.probes: list[Probe] = []
        self.health: dict[str, ProbeHealth] = {}
        self._stats_fd = bpfsys.enable_stats() if bpf_stats else None
        self._prog_prev: dict[str, tuple[int, int]] = {}
        self.bundle = bundle.Bundle()
        try:
            chosen = [cls(self.options) for cls in PROBES if only is None or cls.name in only]
            started = time.monotonic()
            self.bundle = bundle.build(chosen, self.caps, self.options.bpf_dir)
            for probe in chosen:
                health = self.bundle.health.get(probe.name)
                if health is None:
                    tried = self.bundle.note if probe.name in self.bundle.tried else ""
                    health = probe.attach(self.caps, tried=tried)
                self.health[probe.name] = health
                if probe.method is not None:
                    self.probes.append(probe)
                    if self._stats_fd is not None:
                        self._prog_prev[probe.name] = prog_stats(probe.program_fds())
            self.build_s = time.monotonic() - started
        except BaseException:
            self.close()
            raise
        # What the build left (BCC's tables and programs, the parsed headers: ~50,000 objects)
        # lives as long as the sensor. Out of the collector's way, a full collection no longer
        # walks it again every few seconds while a collect makes a thousand process records.
        gc.freeze()
        self._vmstat_prev = self._vmstat()
        self._last = time.monotonic()
        self._resident: dict[int, tuple[int, float, dict[int, int]]] = {}  # pid -> (start, read at, pages)
        self._detailed: set[int] = set()  # the busiest of the last collect (detail_top)

    @property
    def detail_pids(self) -> set[int]:
        return self.options.focus

    @detail_pids.setter
    def detail_pids(self, pids: set[int]) -> None:
        self.options.focus = set(pids)

    def _access_fallback(self) -> AccessInfo | None:
        """What stands for access information when the access probe did not load."""
        health = self.health.get("access")
        if health is None:
            return None
        balancing = nodes.read_int(Path("/proc/sys/kernel/numa_balancing"))
        hints = self.health.get("numa_hint")
        why = f"no DAMON method loaded: {health.reason}" if health.reason else "no DAMON method loaded"
        if balancing and hints is not None and hints.method is not None:
            return AccessInfo(method="numa-hint", scope="sampled by the kernel's NUMA scanner "
                              "(hinting faults per process)", reason=why)
        return AccessInfo(method="per-vma", scope="mapping-level only: cold mappings found by "
                          "MADV_COLD and smaps when a rule demotes", reason=why)

    @staticmethod
    def _vmstat() -> dict[str, int]:
        stats = procfs.vmstat()
        return {key: stats[key] for key in VMSTAT_KEYS if key in stats}

    def _wanted(self, pid: int) -> bool:
        if not self.options.filtered:
            return True
        if pid in self.options.pids:
            return True
        if self.options.cgroup_ids:
            with contextlib.suppress(OSError):
                line = Path(f"/proc/{pid}/cgroup").read_text().strip().splitlines()[0]
                path = Path("/sys/fs/cgroup") / line.split("::", 1)[-1].lstrip("/")
                return os.stat(path).st_ino in self.options.cgroup_ids
        return False

    def collect(self) -> Snapshot:
        """Everything counted since the previous call (or since start)."""
        out = SnapshotBuilder(self.keep_top, self.detail_pids | self._detailed)
        probe_health: dict[str, ProbeHealth] = {}
        for probe in self.probes:
            if probe.reads_processes:
                out.settle()
            map_full, drops, estimated = probe.collect_with_health(out)
            events = run_time_ns = None
            if self._stats_fd is not None and probe.bpf is not None:  # else the kernel counts nothing
                count, run_ns = prog_stats(probe.program_fds())
                prev_count, prev_ns = self._prog_prev.get(probe.name, (0, 0))
                self._prog_prev[probe.name] = (count, run_ns)
                events, run_time_ns = count - prev_count, run_ns - prev_ns
            probe_health[probe.name] = dataclasses.replace(
                self.health[probe.name],
                events=events,
                run_time_ns=run_time_ns,
                map_full=map_full,
                drops=drops,
                estimated=estimated,
                sample_every=probe.sample_every,
            )
        for name, health in self.health.items():
            probe_health.setdefault(name, health)

        now = time.monotonic()
        interval = now - self._last
        self._last = now
        vm = self._vmstat()
        system = {key: vm[key] - self._vmstat_prev.get(key, 0) for key in vm}
        self._vmstat_prev = vm

        processes = []
        others = out.finish()
        for pid in self.detail_pids:
            if pid not in out.processes and procfs.alive(pid):
                out.process(pid)  # idle in the interval, and still asked about
        for pid, sample in out.processes.items():
            if not self._wanted(pid):
                continue
            # the BPF side records comm at first sight and again at exec; /proc only for the rest
            sample.comm = out.comm_of(pid) or procfs.comm(pid) or "?"
            processes.append(sample)
        processes.sort(key=lambda p: (-p.total_faults, p.pid))
        before = self._detailed

        def busy(p: ProcessSample) -> float:
            return p.total_faults * (DETAIL_STAY if p.pid in before else 1.0)

        self._detailed = {p.pid for p in heapq.nlargest(self.detail_top, processes, key=busy)}
        for sample in processes:
            if sample.pid in self._detailed or sample.pid in self.detail_pids:
                self._enrich(sample)

        node_samples = []
        for node in self.node_ids:
            node_samples.append(
                NodeSample(
                    id=node,
                    cpus=sorted(c for c, n in self.cpu_to_node.items() if n == node),
                    faults=out.node_faults.get(node, 0),
                    alloc_pages=sum(p for (_c, m), p in out.alloc_matrix.items() if m == node),
                    alloc_from_cpu_node={c: p for (c, m), p in out.alloc_matrix.items() if m == node},
                    hint_faults_from_cpu_node={
                        c: f for (c, m), f in out.hint_matrix.items() if m == node
                    },
                    free_mb=nodes.memory_mb(node, key="MemFree"),
                    **_heat_fields(out.node_heat, node, out.access),
                )
            )
        return Snapshot(
            host=socket.gethostname(),
            kernel=os.uname().release,
            time=time.time(),
            interval_s=round(interval, 3),
            processes=processes,
            nodes=node_samples,
            page_migrations={
                reason: PageMigrationTotals(succeeded=ok, failed=bad)
                for reason, (ok, bad) in sorted(out.page_migrations.items())
            },
            system=system,
            probes=probe_health,
            access=out.access or self._access_fallback(),
            others=others,
        )

    def access_regions(self, pid: int) -> list[AccessRegion] | None:
        """A process's regions by heat at the last collect (the access probe's, with DAMON
        vaddr): [] while it has none for it yet (not a target yet, or no aggregation since it
        became one; a process in detail_pids becomes one at the next collect); None where no
        per-process method loaded."""
        probe = self._vaddr_probe()
        return None if probe is None else probe.regions(pid) or []

    def access_samples(self) -> float:
        """DAMON's samples per aggregation, as the access probe last read them: the accesses
        of a region read at every sample (0 where no per-process method loaded)."""
        probe = self._vaddr_probe()
        return 0.0 if probe is None else float(probe.intervals.samples_per_aggregation)

    def _vaddr_probe(self) -> AccessProbe | None:
        """The access probe, where it watches processes (DAMON vaddr)."""
        for probe in self.probes:
            if isinstance(probe, AccessProbe) and probe.method == "damon-vaddr":
                return probe
        return None

    def describe(self, pid: int) -> ProcessSample | None:
        """A process's /proc facts now, with no counts (None: it is gone)."""
        if not procfs.alive(pid):
            return None
        sample = ProcessSample(pid=pid, comm=procfs.comm(pid) or "?")
        self._enrich(sample, fresh=True)
        return sample

    def _enrich(self, sample: ProcessSample, fresh: bool = False) -> None:
        pid = sample.pid
        started = None
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = procfs.stat(pid)
            sample.cpu_node = self.cpu_to_node.get(stat.processor)
            sample.age_s = round(procfs.age_s(stat), 1)
            started = stat.start_ticks
        sample.resident_by_node = self._resident_pages(pid, None if fresh else started, sample.total_faults)
        sample.cmdline = procfs.cmdline(pid, limit=CMDLINE_LIMIT)
        cpus = self.rule_cpus(pid) if self.rule_cpus is not None else None
        if cpus:
            sample.threads_off_rule = threads_off(pid, cpus)

    def _resident_pages(self, pid: int, started: int | None, faults: int) -> dict[int, int] | None:
        """numa_maps' pages per node: read now for an asked-about process (or `started` None) or
        one that faulted in RESIDENT_CHURN of its pages, else at most every RESIDENT_REFRESH_S
        (`started` tells a reused pid apart)."""
        now = time.monotonic()
        known = self._resident.get(pid)
        if (known is not None and started is not None and known[0] == started
                and now - known[1] < RESIDENT_REFRESH_S and pid not in self.detail_pids
                and faults <= RESIDENT_CHURN * sum(known[2].values())):
            return dict(known[2])
        try:
            pages = mempolicy.pages_per_node(pid)
        except OSError:
            self._resident.pop(pid, None)
            return None
        if len(self._resident) > 8 * self.detail_top + 64:  # bounded: drop what is too old to use
            self._resident = {p: k for p, k in self._resident.items() if now - k[1] < RESIDENT_REFRESH_S}
        if started is not None:
            self._resident[pid] = (started, now, dict(pages))
        return pages

    def close(self) -> None:
        for probe in self.probes:
            probe.close()
        self.probes = []
        self.bundle.close()
        if self._stats_fd is not None:
            os.close(self._stats_fd)
            self._stats_fd = None
        gc.unfreeze()  # what the build left may be garbage now: back where the collector sees it

    def __enter__(self) -> Sensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _heat_fields(heat: dict[int, dict[str, int]], node: int,
                 access: AccessInfo | None) -> dict[str, int | None]:
    """A node's hot/warm/cold bytes for its NodeSample: 0 where the access probe saw none of
    this node's memory, None (and Snapshot.access says why) where it has no figures yet."""
    if access is None or not heat:
        return {}
    row = heat.get(node, {})
    return {f"{name}_bytes": row.get(name, 0) for name in ("hot", "warm", "cold")}


def threads_off(pid: int, cpus: set[int]) -> int:
    """Threads of a process whose CPU mask lets them run outside `cpus`."""
    count = 0
    for tid in procfs.thread_ids(pid):
        with contextlib.suppress(OSError):
            if not os.sched_getaffinity(tid) <= cpus:
                count += 1
    return count


def paced(interval: float, *, count: int | None = None, duration: float | None = None,
          wait: Callable[[float], None] = time.sleep) -> Iterator[int]:
    """Wait out one interval after another, yielding the number of each (from 1) after it ends:
    `count` of them, or until `duration` seconds have gone (the last interval cut to fit), or
    forever. Deadlines are absolute, so time spent by the caller between intervals does not add
    up into drift. `wait` is how to spend the time: sleep, or serve the kernel's requests."""
    start = time.monotonic()
    end = start + duration if duration is not None else None
    number = 0
    while count is None or number < count:
        deadline = start + (number + 1) * interval
        if end is not None:
            if start + number * interval >= end - 1e-3:
                return
            deadline = min(deadline, end)
        wait(max(deadline - time.monotonic(), 0.0))
        number += 1
        yield number
