/* numa_hint_fentry.c: access NUMA misses, from NUMA-balancing hinting faults, per process.
 *
 * How: fentry on task_numa_fault(last_cpupid, mem_node, pages, flags), which the kernel calls
 * from do_numa_page for every hinting fault it resolves, in the faulting task's context.
 * TNF_FAULT_LOCAL in flags is set exactly when the kernel counts the fault in
 * /proc/vmstat numa_hint_faults_local (the page was on the faulting CPU's node); TNF_MIGRATED
 * when the fault moved the page. Needs the `tracing` program type and BTF.
 */
#include "llamas.h"

#define TNF_MIGRATED 0x01
#define TNF_FAULT_LOCAL 0x08

BPF_TABLE("lru_percpu_hash", u32, struct hint_counts, proc_hints, LLAMAS_MAX_PROCS);
BPF_PERCPU_ARRAY(hint_matrix, u64, LLAMAS_MAX_NODES * LLAMAS_MAX_NODES);
LLAMAS_HEALTH(numa_hint);

LLAMAS_LOOKUP_OR_INIT(proc_hints, u32, struct hint_counts, numa_hint, PROC);
LLAMAS_CACHED(proc_hints, struct hint_counts);

KFUNC_PROBE(task_numa_fault, int last_cpupid, int mem_node, int pages, int flags)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct hint_counts *counts = proc_hints_counts(tgid);
    if (counts) {
        if (flags & TNF_FAULT_LOCAL) {
            counts->local_faults++;
            counts->local_pages += pages;
        } else {
            counts->remote_faults++;
            counts->remote_pages += pages;
        }
        if (flags & TNF_MIGRATED)
            counts->migrated_pages += pages;
    }
    int cell = llamas_node_slot(bpf_get_numa_node_id()) * LLAMAS_MAX_NODES +
               llamas_node_slot(mem_node);
    u64 *matrix = hint_matrix.lookup(&cell);
    if (matrix)
        (*matrix)++;
    return 0;
}
