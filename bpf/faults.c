/* faults.c: page faults per process (user/kernel, read/write), per CPU node, and per 2 MiB region
 * for the selected processes.
 *
 * How: exceptions:page_fault_user and exceptions:page_fault_kernel, attached as raw tracepoints
 * (-DLLAMAS_RAW; arguments address, regs, error_code) or as classic tracepoints (args->address,
 * args->error_code). Bit 1 of the x86 error code is set for a write access. The faulting task is
 * current, so the process is bpf_get_current_pid_tgid() >> 32.
 *
 * Counts are exact until a CPU takes more than LLAMAS_EXACT_PER_TICK faults in a jiffy, and are
 * sampled past that (LLAMAS_SAMPLED, bpf/llamas.h): a storm pays for 1 fault in 16 in full.
 *
 * -DLLAMAS_FILTER: count only processes in `watched_tgids` or whose cgroup is in
 * `watched_cgroups` (filled by user space from -p / --cgroup), and count their regions too.
 */
#include <uapi/linux/ptrace.h>
#include "llamas.h"

#define X86_PF_WRITE 0x2

BPF_TABLE("lru_percpu_hash", u32, struct fault_counts, proc_faults, LLAMAS_MAX_PROCS);
BPF_TABLE("lru_hash", u32, struct comm_value, comms, LLAMAS_MAX_PROCS);
BPF_PERCPU_ARRAY(node_faults, u64, LLAMAS_MAX_NODES);
LLAMAS_HEALTH(faults);
LLAMAS_SAMPLED(faults);

LLAMAS_LOOKUP_OR_INIT(proc_faults, u32, struct fault_counts, faults, PROC);
LLAMAS_CACHED(proc_faults, struct fault_counts);

#ifdef LLAMAS_FILTER
BPF_HASH(watched_tgids, u32, u8, 4096);
BPF_HASH(watched_cgroups, u64, u8, 256);
BPF_TABLE("lru_percpu_hash", struct region_key, struct region_counts, regions, LLAMAS_MAX_REGIONS);

LLAMAS_LOOKUP_OR_INIT(regions, struct region_key, struct region_counts, faults, REGION);

static __always_inline int is_watched(u32 tgid)
{
    if (watched_tgids.lookup(&tgid))
        return 1;
    u64 cgid = bpf_get_current_cgroup_id();
    return watched_cgroups.lookup(&cgid) != NULL;
}
#endif

static __always_inline void remember_comm(u32 tgid)
{
    struct comm_value value = {};
    bpf_get_current_comm(&value.comm, sizeof(value.comm));
    comms.update(&tgid, &value);
}

static __always_inline int count_fault(u64 address, u64 error_code, int kernel)
{
    u64 weight = faults_weight();
    if (weight == 0)
        return 0;  /* a storm, and another fault of the sample stands for this one */
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid == 0)
        return 0;
#ifdef LLAMAS_FILTER
    if (!is_watched(tgid))
        return 0;
#endif
    struct fault_counts *counts = proc_faults_counts(tgid);
    if (!counts)
        return 0;
    if (counts->user_read + counts->user_write + counts->kernel_read + counts->kernel_write == 0 &&
        !comms.lookup(&tgid))
        remember_comm(tgid);  /* the process's first fault, or the first since it took its slot */
    int write = (error_code & X86_PF_WRITE) != 0;
    if (kernel) {
        if (write) counts->kernel_write += weight; else counts->kernel_read += weight;
    } else {
        if (write) counts->user_write += weight; else counts->user_read += weight;
    }

    int node = llamas_node_slot(bpf_get_numa_node_id());
    u64 *per_node = node_faults.lookup(&node);
    if (per_node)
        *per_node += weight;

#ifdef LLAMAS_FILTER
    struct region_key rkey = {.tgid = tgid, .region = address >> LLAMAS_REGION_SHIFT};
    struct region_counts *region = regions_get(&rkey);
    if (region) {
        if (write) region->writes += weight; else region->reads += weight;
    }
#endif
    return 0;
}

#ifdef LLAMAS_RAW
RAW_TRACEPOINT_PROBE(page_fault_user)
{
    return count_fault(ctx->args[0], ctx->args[2], 0);
}

RAW_TRACEPOINT_PROBE(page_fault_kernel)
{
    return count_fault(ctx->args[0], ctx->args[2], 1);
}

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (comms.lookup(&tgid))
        remember_comm(tgid);
    return 0;
}
#else
TRACEPOINT_PROBE(exceptions, page_fault_user)
{
    return count_fault(args->address, args->error_code, 0);
}

TRACEPOINT_PROBE(exceptions, page_fault_kernel)
{
    return count_fault(args->address, args->error_code, 1);
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (comms.lookup(&tgid))
        remember_comm(tgid);
    return 0;
}
#endif
