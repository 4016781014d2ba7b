/* numa_hint_sched.c: the coarser fallback for access NUMA misses, where tracing programs do not
 * load. Counts the scheduler's NUMA-placement decisions per process from sched:sched_move_numa,
 * sched:sched_swap_numa and sched:sched_stick_numa; the local/remote hinting-fault split then
 * comes from /proc/vmstat numa_hint_faults(_local), host-wide only (done in Python).
 */
#include "llamas.h"

BPF_TABLE("lru_percpu_hash", u32, struct numa_move_counts, proc_moves, LLAMAS_MAX_PROCS);
LLAMAS_HEALTH(numa_hint);

LLAMAS_LOOKUP_OR_INIT(proc_moves, u32, struct numa_move_counts, numa_hint, PROC);

/* the tracepoints name the process by value; the map wants a key's address */
static __always_inline struct numa_move_counts *moves_of(u32 tgid)
{
    return proc_moves_get(&tgid);
}

TRACEPOINT_PROBE(sched, sched_move_numa)
{
    struct numa_move_counts *c = moves_of(args->tgid);
    if (c)
        c->moves++;
    return 0;
}

TRACEPOINT_PROBE(sched, sched_swap_numa)
{
    struct numa_move_counts *c = moves_of(args->src_tgid);
    if (c)
        c->swaps++;
    return 0;
}

TRACEPOINT_PROBE(sched, sched_stick_numa)
{
    struct numa_move_counts *c = moves_of(args->src_tgid);
    if (c)
        c->sticks++;
    return 0;
}
