/* llamas.h: the structs and limits that cross from the BPF programs into Python.
 *
 * Python reads the defines and struct layouts from this file itself (llamas_ebpf/bpf_headers.py);
 * BCC hands Python ctypes views of these structs by name, so Python reads fields, never offsets. Nothing here reads a kernel struct:
 * the headers on this host may not match the running kernel, so every probe works from
 * tracepoint arguments and helpers only. One exception, with a fallback: numa_alloc.c's raw
 * tracepoint reads the node bits of page->flags (it says why).
 */
#ifndef LLAMAS_H
#define LLAMAS_H

#define LLAMAS_MAX_NODES 16       /* NUMA nodes tracked; larger ids are folded into the last */
#define LLAMAS_MAX_CPUS 1024
#define LLAMAS_MAX_PROCS 16384    /* per-process LRU maps */
#define LLAMAS_MAX_REGIONS 65536  /* per-(process, 2 MiB region) LRU map */
#define LLAMAS_REGION_SHIFT 21    /* 2 MiB regions */
#define LLAMAS_COMM_LEN 16
#define LLAMAS_DAMON_TARGETS 64   /* kdamond target slots mapped to pids (damon_access.c) */
#define LLAMAS_DAMON_REGIONS 16384 /* DAMON regions held between two reads, all targets */
#define LLAMAS_CACHE_SLOTS 16     /* per-CPU first-level counter slots in front of a per-process map */
#define LLAMAS_EXACT_PER_TICK 64  /* events a CPU counts one by one in a jiffy (LLAMAS_SAMPLED) ... */
#define LLAMAS_SAMPLE_EVERY 16    /* ... and past that, 1 in this many, each standing for this many */

/* <probe>_health[] slots, one per-CPU array per probe */
#define HEALTH_PROC_INSERTS 0     /* new keys put in the per-process map */
#define HEALTH_PROC_FULL 1        /* inserts that failed: the map was full */
#define HEALTH_REGION_INSERTS 2
#define HEALTH_REGION_FULL 3
#define HEALTH_DROPS 4            /* events lost for any other reason */
#define HEALTH_SLOTS 5

static __always_inline int llamas_node_slot(int node)
{
    if (node < 0)
        return 0;
    return node < LLAMAS_MAX_NODES ? node : LLAMAS_MAX_NODES - 1;
}

/* Two helpers every probe needs are written once, in llamas_ebpf/probes/base.py (bpf_source),
 * and expanded there into the source before BCC sees it, each onto the one line that names it:
 * BCC rewrites map calls only in the main file, never in an included header or inside a C macro.
 *   LLAMAS_HEALTH(probe);  the per-CPU array `<probe>_health` and `<probe>_health_inc(slot)`;
 *   LLAMAS_LOOKUP_OR_INIT(map, key type, value type, probe, PROC|REGION);  `<map>_get(key *)`:
 *     lookup; on a miss, count an insert and lookup_or_try_init; on a second miss, count a full
 *     map (HEALTH_PROC_* or HEALTH_REGION_*). Python derives LRU evictions from the insert count.
 *   LLAMAS_CACHED(map, value type);  after the map's LLAMAS_LOOKUP_OR_INIT (u32 keys): the per-CPU
 *     array `<map>_cache` of LLAMAS_CACHE_SLOTS (key, value) slots and `<map>_counts(key)`, the
 *     counters to add to. A key counts in its slot (key % slots) while no other key takes it, and
 *     is added into the map when one does: the hot path is an array lookup, not a hash lookup.
 *     Python reads the map, then the slots, and adds the two.
 *   LLAMAS_SAMPLED(probe);  the per-CPU array `<probe>_rate` and `<probe>_weight()`, what the
 *     event about to be counted stands for: 1 for the first LLAMAS_EXACT_PER_TICK events a CPU
 *     sees in a jiffy; past that (a storm), LLAMAS_SAMPLE_EVERY for 1 event in LLAMAS_SAMPLE_EVERY
 *     and 0 for the others, which the program then skips. Which one counts is drawn at random
 *     each jiffy, so the estimate is unbiased (a fixed one would be off by half a sample a jiffy,
 *     always the same way). A count is exact below that rate and off by less than
 *     LLAMAS_SAMPLE_EVERY per CPU per jiffy above it. `estimated` counts the
 *     events past the exact ones; the snapshot reports it (ProbeHealth.estimated). The clock is
 *     jiffies: bpf_jiffies64() reads a variable, where bpf_ktime_get_ns() reads the clock source
 *     (slow in a VM) and the coarse clock is not allowed in tracing programs.
 *
 * The sensor compiles the probes' sources as one text into one BPF object
 * (llamas_ebpf/probes/bundle.py), so every map, helper and program name is unique across the
 * sources here. Sources that are alternatives for one probe (numa_hint_fentry.c and
 * numa_hint_sched.c) may share names. */

struct sample_rate {
    u64 tick;                     /* the jiffy the events below were counted in */
    u64 events;                   /* events this CPU saw in it */
    u64 estimated;                /* events ever counted by sample rather than one by one */
    u64 phase;                    /* which 1 in LLAMAS_SAMPLE_EVERY counts, drawn each jiffy */
};

struct fault_counts {
    u64 user_read;
    u64 user_write;
    u64 kernel_read;
    u64 kernel_write;
};

struct region_key {
    u32 tgid;
    u32 pad;
    u64 region;                   /* address >> LLAMAS_REGION_SHIFT */
};

struct region_counts {
    u64 reads;
    u64 writes;
};

struct comm_value {
    char comm[LLAMAS_COMM_LEN];
};

struct alloc_counts {
    u64 local_pages;
    u64 remote_pages;
    u64 pages_on_node[LLAMAS_MAX_NODES];
};

struct pfn_range {
    u64 start;                    /* first pfn */
    u64 end;                      /* one past the last pfn */
    u32 node;
    u32 valid;
};

struct hint_counts {
    u64 local_faults;
    u64 remote_faults;
    u64 local_pages;
    u64 remote_pages;
    u64 migrated_pages;           /* hinting faults that moved the page */
};

struct numa_move_counts {
    u64 moves;                    /* sched:sched_move_numa */
    u64 swaps;                    /* sched:sched_swap_numa */
    u64 sticks;                   /* sched:sched_stick_numa */
};

struct page_migration_key {
    u32 tgid;
    u32 reason;
};

struct page_migration_counts {
    u64 succeeded;
    u64 failed;
};

struct cpu_migration_counts {
    u64 same_node;
    u64 cross_node;
};

struct gpu_key {
    u32 tgid;
    u32 event;                    /* index into the Python-side symbol list */
};

struct gpu_counts {
    u64 calls;
    u64 bytes;
};

struct damon_region_key {
    u32 pid;                      /* the target's process; 0 for physical memory (paddr) */
    u32 pad;
    u64 start;                    /* the region's first address (virtual, or physical) */
};

struct damon_region_value {
    u64 end;                      /* one past its last address, at the last aggregation */
    u64 accesses_total;           /* nr_accesses summed over the aggregations seen */
    u64 aggregations;             /* aggregations that reported this region */
    u64 last_accesses;            /* nr_accesses of the last one */
    u64 age;                      /* DAMON's age of the region at the last one, in aggregations */
    u64 seen_ns;                  /* bpf_ktime_get_ns() of the last one */
};

#endif
