"""Prometheus / OpenMetrics output (prometheus_client): `llamas run --metrics ADDR` serves it,
`llamas observe --format openmetrics` prints it each interval.

Names follow Prometheus conventions (`llamas_*`, counters `_total`, `_bytes`, `_seconds`).
Counters are sums of the snapshots' interval counts since this process started. Per-process
series exist only for the top TOP_K processes of the latest snapshot (by faults), labelled with
pid and a sanitized comm, so their number stays bounded however many processes come and go.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llamas_ebpf import metrics

if TYPE_CHECKING:
    from llamas_ebpf.controller import Controller
    from llamas_ebpf.snapshot import Snapshot

TOP_K = 10
PAGE = 4096
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def label_comm(comm: str) -> str:
    """A comm as a label value: printable ASCII only, at most 16 characters."""
    return _UNSAFE.sub("_", comm)[:16]


class Exporter(Collector):
    def __init__(self, controller: Controller | None = None, top_k: int = TOP_K) -> None:
        self.controller, self.top_k = controller, top_k
        self._lock = threading.Lock()
        self.snapshot: Snapshot | None = None
        self.node_faults: dict[str, float] = {}
        self.node_allocs: dict[tuple[str, ...], float] = {}  # (node, local|remote) -> pages
        self.node_hints: dict[tuple[str, ...], float] = {}
        self.probe_events: dict[tuple[str, ...], float] = {}  # (probe, method) -> runs
        self.probe_drops: dict[tuple[str, ...], float] = {}
        self.probe_map_full: dict[tuple[str, ...], float] = {}
        self.probe_estimated: dict[tuple[str, ...], float] = {}
        self.probe_seconds: dict[tuple[str, ...], float] = {}

    def observe(self, snap: Snapshot) -> None:
        """Add one interval's counts."""
        with self._lock:
            self.snapshot = snap
            for node in snap.nodes:
                n = str(node.id)
                self.node_faults[n] = self.node_faults.get(n, 0) + node.faults
                for table, counts in ((self.node_allocs, node.alloc_from_cpu_node),
                                      (self.node_hints, node.hint_faults_from_cpu_node)):
                    for cpu_node, count in counts.items():
                        key = (n, "local" if cpu_node == node.id else "remote")
                        table[key] = table.get(key, 0) + count
            for name, h in snap.probes.items():
                key = (name, h.method or "none")
                self.probe_drops[key] = self.probe_drops.get(key, 0) + h.drops
                self.probe_map_full[key] = self.probe_map_full.get(key, 0) + h.map_full
                if h.sample_every is not None:
                    self.probe_estimated[key] = self.probe_estimated.get(key, 0) + h.estimated
                if h.events is not None:
                    self.probe_events[key] = self.probe_events.get(key, 0) + h.events
                if h.run_time_ns is not None:
                    self.probe_seconds[key] = self.probe_seconds.get(key, 0) + h.run_time_ns / 1e9

    def collect(self) -> Iterator[Metric]:
        latest = self.controller.last_snapshot if self.controller is not None else None
        if latest is not None and latest is not self.snapshot:  # the daemon's, not yet counted
            self.observe(latest)
        with self._lock:
            yield from self._sensing()
            yield from self._processes()
        if self.controller is not None:
            yield from self._policy(self.controller)

    @staticmethod
    def _counter(name: str, doc: str, labels: list[str], values: Mapping[tuple[str, ...], float]) -> Metric:
        family = CounterMetricFamily(name, doc, labels=labels)
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        return family

    def _sensing(self) -> Iterator[Metric]:
        yield self._counter("llamas_node_faults", "Page faults taken on the node's CPUs.", ["node"],
                            {(k,): v for k, v in self.node_faults.items()})
        yield self._counter("llamas_node_allocations", "Pages allocated from the node's memory, by whether "
                            "the allocating CPU was on that node.", ["node", "locality"], self.node_allocs)
        yield self._counter("llamas_node_hint_faults", "NUMA hinting faults on the node's memory.",
                            ["node", "locality"], self.node_hints)
        free = GaugeMetricFamily("llamas_node_free_bytes", "MemFree of the node.", labels=["node"])
        for node in self.snapshot.nodes if self.snapshot else []:
            if node.free_mb is not None:
                free.add_metric([str(node.id)], node.free_mb * 1024 * 1024)
        yield free
        up = GaugeMetricFamily("llamas_probe_up", "1 when the probe is attached (status ok or fallback).",
                               labels=["probe", "method", "status"])
        for name, h in sorted((self.snapshot.probes if self.snapshot else {}).items()):
            up.add_metric([name, h.method or "none", h.status], 0 if h.method is None else 1)
        yield up
        yield self._counter("llamas_probe_events", "Runs of the probe's BPF programs (with BPF stats on).",
                            ["probe", "method"], self.probe_events)
        yield self._counter("llamas_probe_drops", "Events the probe could not count.", ["probe", "method"],
                            self.probe_drops)
        yield self._counter("llamas_probe_map_full", "Entries lost to a full map.", ["probe", "method"],
                            self.probe_map_full)
        yield self._counter("llamas_probe_estimated_events", "Events counted by sample (1 in the probe's "
                            "sample rate, past its exact rate per CPU), not one by one.", ["probe", "method"],
                            self.probe_estimated)
        yield self._counter("llamas_probe_bpf_seconds", "Time spent in the probe's BPF programs.",
                            ["probe", "method"], self.probe_seconds)

    def _processes(self) -> Iterator[Metric]:
        faults = GaugeMetricFamily("llamas_process_faults_per_second", "Page faults a second in the last "
                                   "interval, for the busiest processes.", labels=["pid", "comm"])
        remote = GaugeMetricFamily("llamas_process_remote_alloc_ratio", "Share of the last interval's "
                                   "allocations made off the CPU's node.", labels=["pid", "comm"])
        resident = GaugeMetricFamily("llamas_process_resident_bytes", "Resident memory per node.",
                                     labels=["pid", "comm", "node"])
        snap = self.snapshot
        if snap is not None:
            seconds = max(snap.interval_s, 1e-3)
            for p in sorted(snap.processes, key=lambda p: (-p.total_faults, p.pid))[: self.top_k]:
                labels = [str(p.pid), label_comm(p.comm)]
                faults.add_metric(labels, p.total_faults / seconds)
                if p.numa.alloc_local + p.numa.alloc_remote:
                    ratio = metrics.remote_alloc_fraction(p.numa.alloc_local, p.numa.alloc_remote)
                    remote.add_metric(labels, ratio)
                for node, pages in sorted((p.resident_by_node or {}).items()):
                    resident.add_metric([*labels, str(node)], pages * PAGE)
        yield faults
        yield remote
        yield resident
        if snap is not None:
            yield GaugeMetricFamily("llamas_processes_left_out", "Processes the last snapshot summed as "
                                    "others, not among its busiest (observe --busiest).",
                                    value=snap.others.processes if snap.others is not None else 0)

    @staticmethod
    def _policy(controller: Controller) -> Iterator[Metric]:
        enforcer, activity = controller.enforcer, controller.activity
        state = enforcer.state
        yield GaugeMetricFamily("llamas_policy_generation",
                                "The generation in force (the last when none is).", value=state.generation)
        yield GaugeMetricFamily("llamas_policy_rules", "Rules of the policy in force.",
                                value=len(state.document.rules) if state.document else 0)
        yield GaugeMetricFamily("llamas_policy_processes", "Processes the policy in force has taken.",
                                value=len(enforcer.rule_of))
        yield GaugeMetricFamily("llamas_processes_placed_by_heat",
                                "Taken processes placed by DAMON's heat, region by region (else by mapping).",
                                value=len(enforcer.by_heat))
        yield CounterMetricFamily("llamas_pages_moved", "Pages moved to their rule's nodes.",
                                  value=enforcer.pages_moved_total)
        yield CounterMetricFamily("llamas_threads_pinned", "Threads given their rule's CPUs.",
                                  value=enforcer.threads_pinned_total)
        yield CounterMetricFamily("llamas_reverts", "Generations reverted for making placement worse.",
                                  value=activity.reverts)
        decisions = CounterMetricFamily("llamas_decisions", "Advisor decisions by outcome.",
                                        labels=["outcome"])
        for outcome, count in sorted(activity.decisions.items()):
            decisions.add_metric([outcome], count)
        yield decisions
        yield CounterMetricFamily("llamas_llm_calls", "Messages API calls.", value=activity.llm_calls)
        tokens = CounterMetricFamily("llamas_llm_tokens", "Tokens sent and received.", labels=["kind"])
        tokens.add_metric(["input"], activity.llm_input_tokens)
        tokens.add_metric(["output"], activity.llm_output_tokens)
        yield tokens
        yield CounterMetricFamily("llamas_llm_cost_usd", "Estimated LLM cost in US dollars.",
                                  value=activity.llm_cost_usd)
