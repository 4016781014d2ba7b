"""GPU driver calls and bytes per process from uprobes on the CUDA driver library (bpf/cuda.c).

The library is found through the dynamic linker's cache (ldconfig -p) or given by path
(--cuda-lib). Only symbols the library exports are attached; which ones were is in the reason.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from llamas_ebpf.kernel.features import Capabilities
from llamas_ebpf.probes.base import AttachMethod, Probe, ProgramSource, SnapshotBuilder

LIBRARY = "libcuda.so.1"


@dataclass(frozen=True)
class CudaSymbol:
    name: str
    handler: str  # CALL, ARG2, ARG3, ALLOC or FREE (bpf/cuda.c)


# The event index of a symbol is its position here.
SYMBOLS = (
    CudaSymbol("cuCtxCreate_v2", "CALL"),
    CudaSymbol("cuCtxCreate_v3", "CALL"),
    CudaSymbol("cuMemAlloc_v2", "ALLOC"),
    CudaSymbol("cuMemAllocManaged", "ALLOC"),
    CudaSymbol("cuMemFree_v2", "FREE"),
    CudaSymbol("cuMemcpyHtoD_v2", "ARG3"),
    CudaSymbol("cuMemcpyDtoH_v2", "ARG3"),
    CudaSymbol("cuMemcpyHtoDAsync_v2", "ARG3"),
    CudaSymbol("cuMemcpyDtoHAsync_v2", "ARG3"),
    CudaSymbol("cuLaunchKernel", "CALL"),
    CudaSymbol("cuMemPrefetchAsync", "ARG2"),
    CudaSymbol("cuMemPrefetchAsync_v2", "ARG2"),
    CudaSymbol("cuMemAdvise", "ARG2"),
    CudaSymbol("cuMemAdvise_v2", "ARG2"),
)


def find_library() -> Path | None:
    """libcuda.so.1 as the dynamic linker would find it."""
    try:
        listing = subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in listing.splitlines():
        name, _, target = line.partition("=>")
        if name.strip().startswith(LIBRARY) and "x86-64" in name:
            return Path(target.strip())
    return None


def exported_symbols(library: Path) -> set[str]:
    """The probed CUDA symbols that the library's dynamic symbol table defines."""
    from bcc import BPF

    wanted = {s.name for s in SYMBOLS}
    found = BPF.get_user_functions_and_addresses(str(library).encode(), rb"^cu")
    return wanted & {name.decode() for name, _addr in found}


def _uprobes_blocker(caps: Capabilities) -> str | None:
    if not caps.uprobes.available:
        return f"uprobes unavailable: {caps.uprobes.reason}"
    return None


class CudaProbe(Probe):
    name = "cuda"
    chain = (AttachMethod("uprobe", _uprobes_blocker),)

    def source(self, method: str) -> ProgramSource:
        library = self.options.cuda_lib or find_library()
        if library is None:
            raise RuntimeError(f"{LIBRARY} not found by ldconfig (give --cuda-lib PATH)")
        if not library.exists():
            raise RuntimeError(f"{library}: no such file")
        exported = exported_symbols(library)
        present = [(i, s) for i, s in enumerate(SYMBOLS) if s.name in exported]
        if not present:
            raise RuntimeError(f"{library} exports none of the CUDA driver symbols probed")
        self._found = (library, present)
        handlers = " ".join(f"{s.handler}({i})" for i, s in present)
        return ProgramSource("cuda.c", (f"CUDA_HANDLERS={handlers}",))

    def bind(self, method: str) -> None:
        library, present = self._found
        lib = str(library).encode()
        for index, symbol in present:
            fn = f"on_{symbol.handler.lower()}_{index}"
            self.bpf.attach_uprobe(name=lib, sym=symbol.name.encode(), fn_name=fn.encode())
            if symbol.handler == "ALLOC":
                self.bpf.attach_uretprobe(name=lib, sym=symbol.name.encode(), fn_name=b"alloc_return")
        self.library = library
        self.attached = [s.name for _, s in present]
        self.proc_map = self.per_process("gpu_calls")

    def collect(self, out: SnapshotBuilder) -> None:
        for (pid, event), (calls, nbytes) in self.proc_map.read(out.alive).items():
            symbol = SYMBOLS[event].name
            gpu = out.process(pid).gpu
            gpu.calls[symbol] = gpu.calls.get(symbol, 0) + calls
            if nbytes or SYMBOLS[event].handler != "CALL":
                gpu.bytes[symbol] = gpu.bytes.get(symbol, 0) + nbytes
