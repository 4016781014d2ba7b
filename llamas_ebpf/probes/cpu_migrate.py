"""Task migrations between CPUs, same-node and cross-node apart (bpf/cpu_migrate.c).

The kernel side counts per thread (the moved thread is seldom current); threads are folded
into their process here through /proc/TID/status, cached while the thread lives.
"""

from __future__ import annotations

import ctypes

from llamas_ebpf.kernel import procfs
from llamas_ebpf.probes.base import AttachMethod, Probe, ProgramSource, SnapshotBuilder, needs_program


class CpuMigrateProbe(Probe):
    name = "cpu_migrate"
    chain = (AttachMethod("tracepoint", needs_program("tracepoint", "sched:sched_migrate_task")),)

    def source(self, method: str) -> ProgramSource:
        if not self.options.cpu_to_node:
            raise RuntimeError("no CPU-to-node map in sysfs")
        return ProgramSource("cpu_migrate.c")

    def bind(self, method: str) -> None:
        table = self.bpf["cpu_node"]
        for cpu, node in self.options.cpu_to_node.items():
            table[ctypes.c_int(cpu)] = ctypes.c_uint32(node + 1)  # 0 means unset
        self.thread_map = self.per_process("thread_migrations", cached=True)
        self._tgids: dict[int, int] = {}

    def _tgid(self, tid: int) -> int | None:
        tgid = self._tgids.get(tid)
        if tgid is None:
            tgid = procfs.tgid_of(tid)
            if tgid is not None:
                self._tgids[tid] = tgid
        return tgid

    def collect(self, out: SnapshotBuilder) -> None:
        pending = out.moves  # per process: its threads' moves summed
        for (tid,), (same, cross) in self.thread_map.read(out.alive).items():
            tgid = self._tgid(tid)
            if tgid is None:
                continue  # the thread ended before we could learn its process
            before = pending.get(tgid)
            pending[tgid] = (same, cross) if before is None else (before[0] + same, before[1] + cross)
        # the map read deleted the keys of threads that ended; forget those threads too
        live = self.thread_map.live_keys()
        self._tgids = {tid: tgid for tid, tgid in self._tgids.items() if (tid,) in live}
