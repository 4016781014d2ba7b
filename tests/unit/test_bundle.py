"""The shared BPF object's text (llamas_ebpf/probes/bundle.py), without compiling it."""

from __future__ import annotations

import re
from itertools import combinations

from llamas_ebpf.probes.base import ProbeOptions, ProgramSource, bpf_source
from llamas_ebpf.probes.bundle import Part, autoloaded_names, part_text
from llamas_ebpf.probes.faults import FaultsProbe
from tests.conftest import ROOT

BPF = ROOT / "bpf"
# sources that are alternatives for one probe: never in one object together
ALTERNATIVES = {frozenset({"numa_hint_fentry.c", "numa_hint_sched.c"})}
PROBE_SOURCES = sorted(p.name for p in BPF.glob("*.c") if p.name != "enforce.c")


def _globals(text: str) -> set[str]:
    """Map names, functions and programs a source defines at file scope."""
    names = set(re.findall(r"^BPF_\w+\(\s*(?:\"[^\"]*\",\s*[^,]+,\s*[^,]+,\s*)?(\w+)", text, re.M))
    names |= set(re.findall(r"^static\s+__always_inline\s+[\w\s\*]+?\b(\w+)\s*\(", text, re.M))
    names |= set(re.findall(r"^int\s+(\w+)\s*\(", text, re.M))
    return names | autoloaded_names(text)


def test_autoloaded_program_names_follow_bccs_macros():
    text = """
    RAW_TRACEPOINT_PROBE(page_fault_user) { return 0; }
    TRACEPOINT_PROBE(sched, sched_migrate_task) { return 0; }
    KFUNC_PROBE(task_numa_fault, int last_cpupid, int mem_node) { return 0; }
    int plain(struct pt_regs *ctx) { return 0; }
    """
    assert autoloaded_names(text) == {
        "raw_tracepoint__page_fault_user",
        "tracepoint__sched__sched_migrate_task",
        "kfunc__task_numa_fault",
        "kfunc__vmlinux__task_numa_fault",
    }


def test_each_part_has_its_macros_and_drops_them_after():
    probe = FaultsProbe(ProbeOptions(bpf_dir=BPF, pids=[1]))
    part = Part(probe, "raw_tracepoint", 0, [], probe.source("raw_tracepoint"))
    text = part_text(BPF, part)
    lines = text.splitlines()
    assert lines[1:3] == ["#define LLAMAS_RAW", "#define LLAMAS_FILTER"]
    assert lines[-2:] == ["#undef LLAMAS_RAW", "#undef LLAMAS_FILTER"]
    assert bpf_source(BPF, "faults.c") in text  # the file as compiled: its LLAMAS_ lines written out
    valued = Part(probe, "m", 0, [], ProgramSource("cuda.c", ("CUDA_HANDLERS=CALL(0) ARG2(3)",)))
    assert "#define CUDA_HANDLERS CALL(0) ARG2(3)" in part_text(BPF, valued).splitlines()


def test_probe_sources_define_no_name_twice():
    defined = {name: _globals(bpf_source(BPF, name)) for name in PROBE_SOURCES}
    assert all(defined.values())
    assert "faults_health" in defined["faults.c"] and "tracepoint__kmem__mm_page_alloc" in defined["numa_alloc.c"]
    for a, b in combinations(PROBE_SOURCES, 2):
        if frozenset({a, b}) in ALTERNATIVES:
            continue
        assert not defined[a] & defined[b], (a, b, defined[a] & defined[b])

