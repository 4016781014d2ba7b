/* cpu_migrate.c: task migrations between CPUs, same-node and cross-node counted apart.
 *
 * How: sched:sched_migrate_task (pid = the thread moved, orig_cpu, dest_cpu). The moved thread
 * is usually not current (a waker or the load balancer moves it), so counts are kept per thread
 * id and Python folds them into processes. `cpu_node` maps CPU to node + 1 (0: not filled in
 * yet, or no such CPU); user space fills it after the program is attached.
 */
#include "llamas.h"

BPF_ARRAY(cpu_node, u32, LLAMAS_MAX_CPUS);
BPF_TABLE("lru_percpu_hash", u32, struct cpu_migration_counts, thread_migrations,
          LLAMAS_MAX_PROCS);
LLAMAS_HEALTH(cpu_migrate);

LLAMAS_LOOKUP_OR_INIT(thread_migrations, u32, struct cpu_migration_counts, cpu_migrate, PROC);
LLAMAS_CACHED(thread_migrations, struct cpu_migration_counts);

TRACEPOINT_PROBE(sched, sched_migrate_task)
{
    u32 tid = args->pid;
    if (tid == 0)
        return 0;
    int from = args->orig_cpu, to = args->dest_cpu;
    u32 *from_node = cpu_node.lookup(&from);
    u32 *to_node = cpu_node.lookup(&to);
    if (!from_node || !to_node || *from_node == 0 || *to_node == 0)
        return 0;
    struct cpu_migration_counts *counts = thread_migrations_counts(tid);
    if (counts) {
        if (*from_node == *to_node)
            counts->same_node++;
        else
            counts->cross_node++;
    }
    return 0;
}
