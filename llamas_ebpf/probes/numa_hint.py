"""Access NUMA misses: NUMA-balancing hinting faults.

fentry on task_numa_fault splits them per process and per (CPU node, memory node)
(bpf/numa_hint_fentry.c). Where tracing programs do not load, the fallback counts the
scheduler's NUMA placement decisions per process (bpf/numa_hint_sched.c) and takes the
local/remote split from /proc/vmstat, host-wide only; per-process hint counts are then None.
"""

from __future__ import annotations

from llamas_ebpf.probes.base import (
    MAX_NODES,
    AttachMethod,
    CounterMap,
    Probe,
    ProgramSource,
    SnapshotBuilder,
    needs_program,
)

_SCHED_NUMA = ("sched:sched_move_numa", "sched:sched_swap_numa", "sched:sched_stick_numa")


class NumaHintProbe(Probe):
    name = "numa_hint"
    chain = (
        AttachMethod("fentry", needs_program("tracing")),
        AttachMethod("tracepoint+vmstat", needs_program("tracepoint", *_SCHED_NUMA)),
    )

    def source(self, method: str) -> ProgramSource:
        return ProgramSource("numa_hint_fentry.c" if method == "fentry" else "numa_hint_sched.c")

    def bind(self, method: str) -> None:
        if method == "fentry":
            self.proc_map = self.per_process("proc_hints", cached=True)
            self.matrix_map = CounterMap(self.bpf["hint_matrix"], owner=None)
        else:
            self.proc_map = self.per_process("proc_moves")

    def collect(self, out: SnapshotBuilder) -> None:
        if self.method == "fentry":
            pending = out.hints
            for (pid,), (lf, rf, _lp, _rp, migrated) in self.proc_map.read(out.alive).items():
                pending[pid] = (lf, rf, migrated)  # one key a process
            for (cell,), (faults,) in self.matrix_map.read(out.alive).items():
                key = divmod(cell, MAX_NODES)
                out.hint_matrix[key] = out.hint_matrix.get(key, 0) + faults
        else:
            for (pid,), (moves, swaps, sticks) in self.proc_map.read(out.alive).items():
                out.process(pid).numa.numa_task_moves += moves + swaps + sticks

