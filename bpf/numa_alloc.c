/* numa_alloc.c: allocation NUMA misses. Pages a process was given on a node other than the node
 * of the CPU it ran on (remote) against pages on that node (local), per process and as a
 * (CPU node, memory node) matrix.
 *
 * How: kmem:mm_page_alloc fires for every page allocation. The CPU's node comes from
 * bpf_get_numa_node_id(); the allocating task is current. Kernel-internal allocations by kernel
 * threads count against those threads; interrupt-context allocations (tgid 0) are left out. The
 * kernel's own cross-check is numastat's numa_hit/numa_miss, which compares against the
 * *preferred* node instead; the two agree where no policy is set. The page's node, two ways:
 *
 * -DLLAMAS_RAW, a raw tracepoint (arguments page, order, gfp_flags, migratetype): the node bits
 * of page->flags, where the running kernel's headers say they are (NODES_PGSHIFT, NODES_MASK;
 * page->flags is the first word of struct page in every kernel). The classic tracepoint fills a
 * trace record for every page before the program runs, which is most of what a page-fault storm
 * paid for this probe. A kernel that keeps the node elsewhere (NODE_NOT_IN_PAGE_FLAGS) fails
 * the build here and gets the classic tracepoint.
 *
 * Counts are exact until a CPU allocates more than LLAMAS_EXACT_PER_TICK times in a jiffy, and
 * sampled past that (LLAMAS_SAMPLED, bpf/llamas.h).
 *
 * Otherwise, a classic tracepoint: args->pfn, mapped to its node through `node_ranges`, which
 * user space fills from sysfs memory blocks.
 */
#include "llamas.h"

BPF_TABLE("lru_percpu_hash", u32, struct alloc_counts, proc_allocs, LLAMAS_MAX_PROCS);
BPF_PERCPU_ARRAY(alloc_matrix, u64, LLAMAS_MAX_NODES * LLAMAS_MAX_NODES);
LLAMAS_HEALTH(numa_alloc);
LLAMAS_SAMPLED(numa_alloc);

LLAMAS_LOOKUP_OR_INIT(proc_allocs, u32, struct alloc_counts, numa_alloc, PROC);
LLAMAS_CACHED(proc_allocs, struct alloc_counts);

static __always_inline void count_pages(u32 tgid, int mem_node, u64 pages)
{
    int cpu_node = bpf_get_numa_node_id();
    struct alloc_counts *counts = proc_allocs_counts(tgid);
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
}

#ifdef LLAMAS_RAW
#include <linux/mm.h>
#if defined(NODE_NOT_IN_PAGE_FLAGS)
#error "this kernel keeps a page's node outside page->flags"
#endif

RAW_TRACEPOINT_PROBE(mm_page_alloc)
{
    struct page *page = (struct page *)ctx->args[0];
    if (!page)
        return 0;  /* the allocation failed */
    u64 weight = numa_alloc_weight();
    if (weight == 0)
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid == 0)
        return 0;
    unsigned long flags = 0;
    if (bpf_probe_read_kernel(&flags, sizeof(flags), page) != 0) {
        numa_alloc_health_inc(HEALTH_DROPS);
        return 0;
    }
    count_pages(tgid, (flags >> NODES_PGSHIFT) & NODES_MASK, weight << (ctx->args[1] & 31));
    return 0;
}
#else
#define MAX_RANGES 32

BPF_ARRAY(node_ranges, struct pfn_range, MAX_RANGES);

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
    u64 weight = numa_alloc_weight();
    if (weight == 0)
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
    count_pages(tgid, mem_node, weight << args->order);
    return 0;
}
#endif
