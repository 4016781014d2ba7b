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
BPF_PERCPU_ARRAY(page_migrate_health, u64, HEALTH_SLOTS);
static __always_inline void page_migrate_health_inc(int slot) { u64 *v = page_migrate_health.lookup(&slot); if (v) (*v)++; }

static __always_inline struct page_migration_counts *proc_migrations_get(struct page_migration_key *key)
{
    struct page_migration_counts *value = proc_migrations.lookup(key);
    if (value)
        return value;
    struct page_migration_counts zero = {};
    value = proc_migrations.lookup_or_try_init(key, &zero);
    page_migrate_health_inc(value ? HEALTH_PROC_INSERTS : HEALTH_PROC_FULL);
    return value;
}

TRACEPOINT_PROBE(migrate, mm_migrate_pages)
{
    struct page_migration_key key = {
        .tgid = bpf_get_current_pid_tgid() >> 32,
        .reason = args->reason,
    };
    struct page_migration_counts zero = {};
    struct page_migration_counts *counts = proc_migrations_get(&key);
    if (counts) {
        counts->succeeded += args->succeeded;
        counts->failed += args->failed;
    }
    return 0;
}
