/* damon_access.c: DAMON's regions, counted in the kernel as each aggregation reports them.
 *
 * How: the damon:damon_aggregated tracepoint (target_id, nr_regions, start, end, nr_accesses,
 * age) fires once per region per aggregation interval, in the kdamond's own thread. Only the
 * kdamond whose thread id user space put in `damon_thread` is counted (other kdamonds may run on
 * the host). `damon_target_pid` maps the kdamond's target slots to pids (all 0 for paddr),
 * filled by user space whenever it commits targets. User space reads `damon_regions` once per
 * interval, whole, and deletes the regions DAMON no longer reports (merged or split away);
 * `damon_reports` tells it when no aggregation came since its last read, so it reads nothing.
 */
#include "llamas.h"

BPF_ARRAY(damon_thread, u32, 1);
BPF_ARRAY(damon_target_pid, u32, LLAMAS_DAMON_TARGETS);
BPF_HASH(damon_regions, struct damon_region_key, struct damon_region_value, LLAMAS_DAMON_REGIONS);
BPF_ARRAY(damon_reports, u64, 1);  /* regions reported so far: unchanged, nothing new to read */
LLAMAS_HEALTH(access);

LLAMAS_LOOKUP_OR_INIT(damon_regions, struct damon_region_key, struct damon_region_value, access, REGION);

TRACEPOINT_PROBE(damon, damon_aggregated)
{
    u32 slot = 0;
    u32 *thread = damon_thread.lookup(&slot);
    if (!thread || *thread != (u32)bpf_get_current_pid_tgid())
        return 0;
    if (args->target_id >= LLAMAS_DAMON_TARGETS) {
        access_health_inc(HEALTH_DROPS);
        return 0;
    }
    slot = args->target_id;
    u32 *pid = damon_target_pid.lookup(&slot);
    if (!pid)
        return 0;
    struct damon_region_key key = {.pid = *pid, .start = args->start};
    struct damon_region_value *value = damon_regions_get(&key);
    if (!value)
        return 0;
    value->end = args->end;
    value->accesses_total += args->nr_accesses;
    value->aggregations += 1;
    value->last_accesses = args->nr_accesses;
    value->age = args->age;
    value->seen_ns = bpf_ktime_get_ns();
    slot = 0;
    u64 *reports = damon_reports.lookup(&slot);
    if (reports)
        __sync_fetch_and_add(reports, 1);
    return 0;
}
