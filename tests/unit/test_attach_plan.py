"""Attach chains decided from forced capability sets."""

from __future__ import annotations

from llamas_ebpf.kernel.features import Capabilities, Feature
from llamas_ebpf.probes.base import plan
from llamas_ebpf.probes.cuda import CudaProbe
from llamas_ebpf.probes.faults import FaultsProbe
from llamas_ebpf.probes.gpu_fence import GpuFenceProbe, present_events
from llamas_ebpf.probes.numa_hint import NumaHintProbe

YES, NO = Feature(True), Feature(False, "EPERM: Operation not permitted")
ALL_TPS = {
    "exceptions:page_fault_user", "exceptions:page_fault_kernel", "kmem:mm_page_alloc",
    "sched:sched_move_numa", "sched:sched_swap_numa", "sched:sched_stick_numa",
    "migrate:mm_migrate_pages", "sched:sched_migrate_task",
}


def caps(**program_types: Feature) -> Capabilities:
    types = {"tracepoint": YES, "raw_tracepoint": YES, "tracing": YES, "lsm": YES, **program_types}
    return Capabilities(root=YES, bpf=YES, btf=YES, headers=YES, program_types=types,
                        kprobes=NO, uprobes=YES, tracepoints=set(ALL_TPS))


def usable(probe_class, capabilities) -> list[str]:
    return [m.name for m, blocker in plan(probe_class.chain, capabilities) if blocker is None]


def test_faults_prefer_raw_tracepoints():
    assert usable(FaultsProbe, caps()) == ["raw_tracepoint", "tracepoint"]
    assert usable(FaultsProbe, caps(raw_tracepoint=NO)) == ["tracepoint"]


def test_hint_faults_fall_back_without_tracing_programs():
    assert usable(NumaHintProbe, caps())[0] == "fentry"
    steps = plan(NumaHintProbe.chain, caps(tracing=NO))
    assert steps[0][0].name == "fentry" and "EPERM" in steps[0][1]
    assert steps[1][0].name == "tracepoint+vmstat" and steps[1][1] is None


def test_missing_tracepoint_blocks_with_its_name():
    capabilities = caps()
    capabilities.tracepoints.discard("exceptions:page_fault_kernel")
    steps = plan(FaultsProbe.chain, capabilities)
    assert all(blocker and "exceptions:page_fault_kernel" in blocker for _, blocker in steps)


def test_cuda_needs_uprobes():
    capabilities = caps()
    capabilities.uprobes = Feature(False, "uprobes (CONFIG_UPROBE_EVENTS) not in this kernel")
    assert usable(CudaProbe, capabilities) == []


def test_gpu_fence_needs_drm_tracepoints():
    assert usable(GpuFenceProbe, caps()) == []
    capabilities = caps()
    capabilities.tracepoints.add("dma_fence:dma_fence_emit")
    assert usable(GpuFenceProbe, capabilities) == ["tracepoint"]
    assert present_events(capabilities) == ["dma_fence:dma_fence_emit"]
