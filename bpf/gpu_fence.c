/* gpu_fence.c: DRM GPU activity per process from the dma_fence:* and gpu_scheduler:*
 * tracepoints, where a DRM driver provides them. The handlers read no tracepoint fields (their
 * layouts differ between kernels); each is attached by Python to one present event, whose index
 * is the event number in the counts.
 */
#include "llamas.h"

BPF_TABLE("lru_percpu_hash", struct gpu_key, struct gpu_counts, fence_events, LLAMAS_MAX_PROCS);
LLAMAS_HEALTH(gpu_fence);

LLAMAS_LOOKUP_OR_INIT(fence_events, struct gpu_key, struct gpu_counts, gpu_fence, PROC);

static __always_inline int count_event(u32 event)
{
    struct gpu_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .event = event};
    struct gpu_counts *counts = fence_events_get(&key);
    if (counts)
        counts->calls++;
    return 0;
}

#define EVENT(i) int on_event_##i(void *ctx) { return count_event(i); }
EVENT(0) EVENT(1) EVENT(2) EVENT(3) EVENT(4) EVENT(5) EVENT(6) EVENT(7)
EVENT(8) EVENT(9) EVENT(10) EVENT(11)
