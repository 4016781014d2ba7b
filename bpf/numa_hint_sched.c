/* numa_hint_sched.c: the coarser fallback for access NUMA misses, where tracing programs do not
 * load. Counts the scheduler's NUMA-placement decisions per process from sched:sched_move_numa,
 * sched:sched_swap_numa and sched:sched_stick_numa; the local/remote hinting-fault split then
 * comes from /proc/vmstat numa_hint_faults(_local), host-wide only (done in Python).
 */
#include "llamas.h"

BPF_TABLE("lru_percpu_hash", u32, struct numa_move_counts, proc_moves, LLAMAS_MAX_PROCS);
BPF_PERCPU_ARRAY(numa_hint_health, u64, HEALTH_SLOTS);
static __always_inline void numa_hint_health_inc(int slot) { u64 *v = numa_hint_health.lookup(&slot); if (v) (*v)++; }

static __always_inline struct numa_move_counts *proc_moves_get(u32 *key)
{
    struct numa_move_counts *value = proc_moves.lookup(key);
    if (value)
        return value;
    struct numa_move_counts zero = {};
    value = proc_moves.lookup_or_try_init(key, &zero);
    numa_hint_health_inc(value ? HEALTH_PROC_INSERTS : HEALTH_PROC_FULL);
    return value;
}

static __always_inline struct numa_move_counts *counts_for(u32 tgid)
{
    struct numa_move_counts zero = {};
    return proc_moves_get(&tgid);
}

TRACEPOINT_PROBE(sched, sched_move_numa)
{
    struct numa_move_counts *c = counts_for(args->tgid);
    if (c)
        c->moves++;
    return 0;
}

TRACEPOINT_PROBE(sched, sched_swap_numa)
{
    struct numa_move_counts *c = counts_for(args->src_tgid);
    if (c)
        c->swaps++;
    return 0;
}

TRACEPOINT_PROBE(sched, sched_stick_numa)
{
    struct numa_move_counts *c = counts_for(args->src_tgid);
    if (c)
        c->sticks++;
    return 0;
}
