"""The sensor's shared BPF object (llamas_ebpf/probes/bundle.py) on this kernel: the probes load
as one object, each keeps its own programs and counts, and a source that does not compile costs
only its own probe."""

from __future__ import annotations

import shutil

from llamas_ebpf.paths import Paths
from llamas_ebpf.sense import Sensor

PAGES = 5000


def _names(funcs) -> set[str]:
    return {n.decode() if isinstance(n, bytes) else n for n in funcs}


def test_probes_share_one_object_and_each_keeps_its_programs(toucher):
    with Sensor(bpf_stats=True) as sensor:
        shared = sensor.bundle
        assert shared.note == ""
        # every probe with a BPF source that loads here is in it
        bpf_probes = {p.name for p in sensor.probes if p.name != "taskstats"}
        assert set(shared.health) == bpf_probes and len(bpf_probes) >= 5, sensor.health
        assert all(p.bpf is shared.bpf for p in sensor.probes if p.name in bpf_probes)
        # the programs are split among the probes: none twice, none left out
        owned = [p.programs for p in sensor.probes if p.name in bpf_probes]
        assert all(owned), owned
        assert sum(len(o) for o in owned) == len(set().union(*owned))
        assert set().union(*owned) == _names(shared.bpf.funcs)
        sensor.collect()
        toucher.touch("write", PAGES)
        snap = sensor.collect()
    sample = snap.process(toucher.pid)
    assert sample is not None and sample.faults.write >= 0.98 * PAGES  # estimated past a rate (llamas.h)
    # each probe's run count is its own programs': the fault and allocation programs ran once
    # per page at least; page migrations and GPU fences are rare here (all the object's programs
    # together ran more than twice per page)
    events = {name: health.events for name, health in snap.probes.items()}
    assert events["faults"] >= PAGES and events["numa_alloc"] >= PAGES, events
    assert events["page_migrate"] < PAGES / 10, events
    assert events.get("gpu_fence") in (None, *range(PAGES // 10)), events
    assert shared.bpf is None, "closing the sensor closes the shared object"


def test_a_source_that_does_not_compile_costs_only_its_own_probe(tmp_path, toucher):
    broken = tmp_path / "bpf"
    shutil.copytree(Paths.from_env().bpf_dir, broken)
    page_migrate = broken / "page_migrate.c"
    page_migrate.write_text(page_migrate.read_text() + "\nthis is not C;\n")
    with Sensor(bpf_dir=broken) as sensor:
        assert sensor.bundle.bpf is None
        assert "did not load" in sensor.bundle.note and "page_migrate" in sensor.bundle.note
        health = sensor.health
        assert health["page_migrate"].status == "unavailable"
        assert "did not load" in health["page_migrate"].reason
        assert health["faults"].status == "ok" and health["faults"].method == "raw_tracepoint"
        assert health["faults"].reason.startswith("one object for ")  # says why it loaded alone
        assert health["numa_alloc"].status == "ok"
        sensor.collect()
        toucher.touch("write", PAGES)
        snap = sensor.collect()
    sample = snap.process(toucher.pid)
    assert sample is not None and sample.faults.write >= 0.98 * PAGES  # estimated past a rate (llamas.h)
    assert sample.numa.alloc_local >= 0.98 * PAGES
