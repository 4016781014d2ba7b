"""DRM GPU activity per process from dma_fence:* and gpu_scheduler:* tracepoints
(bpf/gpu_fence.c), where a DRM driver registers them."""

from __future__ import annotations

from llamas_ebpf.kernel.features import Capabilities
from llamas_ebpf.probes.base import AttachMethod, Probe, ProgramSource, SnapshotBuilder

MAX_EVENTS = 12  # handlers on_event_0 .. on_event_11 in bpf/gpu_fence.c
_WANTED = (
    "dma_fence:dma_fence_emit",
    "dma_fence:dma_fence_signaled",
    "dma_fence:dma_fence_wait_start",
    "dma_fence:dma_fence_wait_end",
    "gpu_scheduler:drm_sched_job",
    "gpu_scheduler:drm_run_job",
    "gpu_scheduler:drm_sched_process_job",
)


def present_events(caps: Capabilities) -> list[str]:
    return [tp for tp in _WANTED if caps.has_tracepoint(tp)][:MAX_EVENTS]


def _blocker(caps: Capabilities) -> str | None:
    if not caps.program("tracepoint").available:
        return f"tracepoint programs unavailable: {caps.program('tracepoint').reason}"
    if not present_events(caps):
        return "no dma_fence or gpu_scheduler tracepoints (no DRM GPU driver)"
    return None


class GpuFenceProbe(Probe):
    name = "gpu_fence"
    chain = (AttachMethod("tracepoint", _blocker),)

    def prepare(self, caps: Capabilities) -> None:
        super().prepare(caps)
        self.events = present_events(caps)

    def source(self, method: str) -> ProgramSource:
        return ProgramSource("gpu_fence.c")

    def bind(self, method: str) -> None:
        for index, event in enumerate(self.events):
            self.bpf.attach_tracepoint(tp=event.encode(), fn_name=f"on_event_{index}".encode())
        self.proc_map = self.per_process("fence_events")

    def collect(self, out: SnapshotBuilder) -> None:
        for (pid, event), (calls, _bytes) in self.proc_map.read(out.alive).items():
            name = self.events[event]
            gpu = out.process(pid).gpu
            gpu.calls[name] = gpu.calls.get(name, 0) + calls
