"""Allocation NUMA misses per process and as a (CPU node, memory node) matrix
(bpf/numa_alloc.c)."""

from __future__ import annotations

import ctypes

from llamas_ebpf.probes.base import (
    MAX_NODES,
    AttachMethod,
    CounterMap,
    Probe,
    ProgramSource,
    SnapshotBuilder,
    needs_program,
)

MAX_RANGES = 32


class NumaAllocProbe(Probe):
    name = "numa_alloc"
    chain = (
        # a raw tracepoint reads the page's node from its flags and skips the trace record the
        # classic one fills for every page (bpf/numa_alloc.c)
        AttachMethod("raw_tracepoint", needs_program("raw_tracepoint", "kmem:mm_page_alloc")),
        AttachMethod("tracepoint", needs_program("tracepoint", "kmem:mm_page_alloc")),
    )

    def source(self, method: str) -> ProgramSource:
        if method == "raw_tracepoint":
            return ProgramSource("numa_alloc.c", ("LLAMAS_RAW",))
        ranges = self.options.pfn_ranges
        if not ranges:
            raise RuntimeError("no memory block ranges in sysfs to map pfns to nodes")
        if len(ranges) > MAX_RANGES:
            raise RuntimeError(f"{len(ranges)} pfn ranges, more than the {MAX_RANGES} the probe maps")
        return ProgramSource("numa_alloc.c")

    def bind(self, method: str) -> None:
        if method == "tracepoint":
            table = self.bpf["node_ranges"]
            for index, pfn_range in enumerate(self.options.pfn_ranges):
                leaf = table.Leaf(pfn_range.start, pfn_range.end, pfn_range.node, 1)
                table[ctypes.c_int(index)] = leaf
        self.proc_map = self.per_process("proc_allocs", cached=True, sampled=True)
        self.matrix_map = CounterMap(self.bpf["alloc_matrix"], owner=None)
        # a value is local, remote and a slot per node (16), most of them zero: the nodes' slots
        # are read up to the highest node with memory, or that the matrix has seen pages on
        # (a node onlined since), not all 16 for every process
        highest = max((r.node for r in self.options.pfn_ranges), default=0)
        self.proc_map.fields = 2 + min(highest, MAX_NODES - 1) + 1  # before its first read

    def collect(self, out: SnapshotBuilder) -> None:
        # the matrix first: a page in a process's node slot is in a cell too, so a node's first
        # pages widen the read before it skips them (one that comes between the two reads is
        # counted, from the start, by the next)
        for (cell,), (pages,) in self.matrix_map.read(out.alive).items():
            key = divmod(cell, MAX_NODES)
            out.alloc_matrix[key] = out.alloc_matrix.get(key, 0) + pages
            self.proc_map.widen(2 + key[1] + 1)
        pending = out.allocs
        for (pid,), values in self.proc_map.read(out.alive).items():
            pending[pid] = values  # one key a process: local, remote, pages on the first nodes
