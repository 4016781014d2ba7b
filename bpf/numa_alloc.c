/* numa_alloc.c: allocation NUMA misses. Pages a process was given on a node other than the node
 * of the CPU it ran on (remote) against pages on that node (local), per process and as a
 * (CPU node, memory node) matrix.
 *
 * How: kmem:mm_page_alloc gives the pfn and order of every page allocation. The pfn is mapped to
 * its node through `node_ranges`, which user space fills from sysfs memory blocks; the CPU's
 * node comes from bpf_get_numa_node_id(). The allocating task is current. Kernel-internal
 * allocations by kernel threads count against those threads; interrupt-context allocations
 * (tgid 0) are left out. The kernel's own cross-check is numastat's numa_hit/numa_miss, which
 * compares against the *preferred* node instead; the two agree where no policy is set.
 */
#include "llamas.h"

#define MAX_RANGES 32

BPF_ARRAY(node_ranges, struct pfn_range, MAX_RANGES);
BPF_TABLE("lru_percpu_hash", u32, struct alloc_counts, proc_allocs, LLAMAS_MAX_PROCS);
BPF_PERCPU_ARRAY(alloc_matrix, u64, LLAMAS_MAX_NODES * LLAMAS_MAX_NODES);
LLAMAS_HEALTH(numa_alloc);

LLAMAS_LOOKUP_OR_INIT(proc_allocs, u32, struct alloc_counts, numa_alloc, PROC);

static __always_inline int pfn_to_node(u64 pfn)
{
#pragma unroll
    for (int i = 0; i < MAX_RANGES; i++) {
        int k = i;
        struct pfn_range *range = node_ranges.lookup(&k);
        if (!range || !range->valid)
            return -1;
        if (pfn >= range->start && pfn < range->end)
            return range->node;
    }
    return -1;
}

TRACEPOINT_PROBE(kmem, mm_page_alloc)
{
    if (args->pfn == (unsigned long)-1)
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid == 0)
        return 0;
    int first = 0;
    struct pfn_range *configured = node_ranges.lookup(&first);
    if (!configured || !configured->valid)
        return 0;  /* attached before user space filled the ranges */
    int mem_node = pfn_to_node(args->pfn);
    if (mem_node < 0) {
        numa_alloc_health_inc(HEALTH_DROPS);
        return 0;
    }
    int cpu_node = bpf_get_numa_node_id();
    u64 pages = 1ULL << args->order;

    struct alloc_counts *counts = proc_allocs_get(&tgid);
    if (counts) {
        if (mem_node == cpu_node)
            counts->local_pages += pages;
        else
            counts->remote_pages += pages;
        int slot = llamas_node_slot(mem_node);
        if (slot >= 0 && slot < LLAMAS_MAX_NODES)
            counts->pages_on_node[slot] += pages;
    }
    int cell = llamas_node_slot(cpu_node) * LLAMAS_MAX_NODES + llamas_node_slot(mem_node);
    u64 *matrix = alloc_matrix.lookup(&cell);
    if (matrix)
        *matrix += pages;
    return 0;
}
