"""NVIDIA GPUs through NVML (nvidia-ml-py): name, memory, NUMA node and per-process memory.
Where there is no NVIDIA driver, `gpus()` says why in its second value."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NvmlGpu:
    index: int
    name: str
    pci_address: str  # 0000:17:00.0, lower case, as sysfs spells it
    memory_total_mb: int
    memory_used_mb: int
    numa_node: int | None
    process_memory_mb: dict[int, int] = field(default_factory=dict)  # pid -> MiB


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def gpus() -> tuple[list[NvmlGpu], str]:
    """(GPUs, "") or ([], why NVML is unavailable)."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"NVML unavailable: {exc}"
    try:
        result = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            bus_id = _text(pynvml.nvmlDeviceGetPciInfo(handle).busId).lower()
            # NVML spells the domain with 8 hex digits; sysfs with 4
            domain, rest = bus_id.split(":", 1)
            try:
                numa: int | None = pynvml.nvmlDeviceGetNumaNodeId(handle)
            except (pynvml.NVMLError, AttributeError):
                numa = None
            processes = {}
            try:
                for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    processes[proc.pid] = (proc.usedGpuMemory or 0) // (1 << 20)
            except pynvml.NVMLError:
                pass
            result.append(NvmlGpu(
                index=index,
                name=_text(pynvml.nvmlDeviceGetName(handle)),
                pci_address=f"{int(domain, 16):04x}:{rest}",
                memory_total_mb=memory.total // (1 << 20),
                memory_used_mb=memory.used // (1 << 20),
                numa_node=numa if numa is not None and numa >= 0 else None,
                process_memory_mb=processes,
            ))
        return result, ""
    finally:
        pynvml.nvmlShutdown()
