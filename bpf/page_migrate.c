/* page_migrate.c: page migrations by reason, per process.
 *
 * How: migrate:mm_migrate_pages fires once per migrate_pages() batch with the pages that
 * succeeded and failed and a reason code. Reason names are not compiled in: Python reads them
 * from the tracepoint's format file (__print_symbolic), because the codes move between kernels.
 * The task is current: the caller of move_pages/mbind, the faulting task for NUMA-balancing
 * migrations, kcompactd/kswapd for compaction and demotion.
 */
#include <linux/migrate_mode.h> /* enum migrate_mode, a field of the tracepoint args BCC generates */
#include "llamas.h"

BPF_TABLE("lru_percpu_hash", struct page_migration_key, struct page_migration_counts,
          proc_migrations, LLAMAS_MAX_PROCS);
LLAMAS_HEALTH(page_migrate);

LLAMAS_LOOKUP_OR_INIT(proc_migrations, struct page_migration_key, struct page_migration_counts, page_migrate, PROC);

TRACEPOINT_PROBE(migrate, mm_migrate_pages)
{
    struct page_migration_key key = {
        .tgid = bpf_get_current_pid_tgid() >> 32,
        .reason = args->reason,
    };
    struct page_migration_counts *counts = proc_migrations_get(&key);
    if (counts) {
        counts->succeeded += args->succeeded;
        counts->failed += args->failed;
    }
    return 0;
}
