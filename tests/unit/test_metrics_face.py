"""The OpenMetrics face on a fixture: counters add the intervals up, per-process series stay
bounded, and a hostile comm cannot break the exposition format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from llamas_ebpf.faces.metrics import TOP_K, Exporter
from llamas_ebpf.snapshot import FaultCounts, NodeSample, ProbeHealth, ProcessSample, Snapshot


def _snap(count: int) -> Snapshot:
    processes = [ProcessSample(pid=1000 + i, comm='evil"}\n# EOF' if i == 0 else f"w{i}",
                               faults=FaultCounts(user=count - i)) for i in range(count)]
    return Snapshot(host="h", kernel="6.12", time=0.0, interval_s=1.0, processes=processes,
                    nodes=[NodeSample(id=0, faults=100, alloc_from_cpu_node={0: 30, 1: 10}, free_mb=512)],
                    probes={"faults": ProbeHealth(name="faults", method="raw_tracepoint", status="ok", drops=2)})


def test_counters_add_up_and_processes_stay_bounded():
    registry = CollectorRegistry()
    exporter = Exporter()
    registry.register(exporter)
    exporter.observe(_snap(500))
    exporter.observe(_snap(500))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("llamas_node_faults_total", (("node", "0"),))] == 200
    assert samples[("llamas_node_allocations_total", (("locality", "local"), ("node", "0")))] == 60
    assert samples[("llamas_node_allocations_total", (("locality", "remote"), ("node", "0")))] == 20
    assert samples[("llamas_node_free_bytes", (("node", "0"),))] == 512 * 1024 * 1024
    assert samples[("llamas_probe_drops_total", (("method", "raw_tracepoint"), ("probe", "faults")))] == 4
    per_process = [s for s in families["llamas_process_faults_per_second"].samples]
    assert len(per_process) == TOP_K and {s.labels["pid"] for s in per_process} == {str(1000 + i) for i in range(TOP_K)}
    hostile = next(s for s in per_process if s.labels["pid"] == "1000")
    assert hostile.labels["comm"] == "evil_____EOF"
