"""Page faults per process, per CPU node, and per 2 MiB region of the selected processes
(bpf/faults.c)."""

from __future__ import annotations

import ctypes
import struct

from llamas_ebpf.kernel import bpfsys
from llamas_ebpf.probes.base import (
    HEALTH_REGION_INSERTS,
    REGION_SHIFT,
    AttachMethod,
    CounterMap,
    Probe,
    ProgramSource,
    SnapshotBuilder,
    needs_program,
)
from llamas_ebpf.snapshot import Region

_TRACEPOINTS = ("exceptions:page_fault_user", "exceptions:page_fault_kernel")


class FaultsProbe(Probe):
    name = "faults"
    chain = (
        # raw tracepoints skip the perf-buffer copy of the arguments: cheaper per fault
        AttachMethod("raw_tracepoint", needs_program("raw_tracepoint", *_TRACEPOINTS)),
        AttachMethod("tracepoint", needs_program("tracepoint", *_TRACEPOINTS)),
    )

    def source(self, method: str) -> ProgramSource:
        defines = []
        if method == "raw_tracepoint":
            defines.append("LLAMAS_RAW")
        if self.options.filtered:
            defines.append("LLAMAS_FILTER")
        return ProgramSource("faults.c", tuple(defines))

    def bind(self, method: str) -> None:
        if self.options.filtered:
            one = ctypes.c_uint8(1)
            for pid in self.options.pids:
                self.bpf["watched_tgids"][ctypes.c_uint32(pid)] = one
            for cgid in self.options.cgroup_ids:
                self.bpf["watched_cgroups"][ctypes.c_uint64(cgid)] = one
        self.proc_map = self.per_process(
            "proc_faults", regions="regions" if self.options.filtered else None, cached=True,
            sampled=True,
        )
        self.node_map = CounterMap(self.bpf["node_faults"], owner=None)
        self._texts: dict[bytes, str] = {}  # a comm's raw bytes -> its text
        comms = self.bpf["comms"]
        self._comms_fd, self._comm_size = comms.map_fd, ctypes.sizeof(comms.Leaf)
        assert self.health_counters is not None
        self.region_map = self.health_counters.maps.get(HEALTH_REGION_INSERTS)

    def comm(self, pid: int) -> str | None:
        """The process's comm as the kernel last wrote it in the comms map (at its first fault
        and at exec), looked up for a kept process only: reading all of a busy host's was a
        millisecond a collect."""
        raw = bpfsys.map_lookup(self._comms_fd, struct.pack("<I", pid), self._comm_size)
        return None if raw is None else self._text(raw)

    def _text(self, comm: bytes) -> str:
        text = self._texts.get(comm)
        if text is None:
            if len(self._texts) >= 4096:
                self._texts.clear()  # bounded: many processes share a handful of names
            text = self._texts[comm] = comm.split(b"\0", 1)[0].decode(errors="replace")
        return text

    def collect(self, out: SnapshotBuilder) -> None:
        out.comm_of = self.comm
        pending = out.faults
        for (pid,), counts in self.proc_map.read(out.alive).items():
            user_read, user_write, kernel_read, kernel_write = counts
            pending[pid] = (user_read + user_write, kernel_read + kernel_write,
                            user_read + kernel_read, user_write + kernel_write)
        for (node,), (count,) in self.node_map.read(out.alive).items():
            out.node_faults[node] = out.node_faults.get(node, 0) + count
        if self.region_map is not None:
            regions = self.region_map.read(out.alive)
            for (pid, _pad, region), (reads, writes) in regions.items():
                out.process(pid).regions.append(
                    Region(start=region << REGION_SHIFT, reads=reads, writes=writes)
                )
            for pid in {key[0] for key in regions}:
                out.processes[pid].regions.sort(key=lambda r: r.start)
