/* enforce.c: policy enforcement in the kernel, from the pinned policy maps (bpf/llamas_policy.h).
 *
 * BPF cannot move a page or set an affinity. What it does, at event time:
 *   - classify: at sched:sched_process_exec a process whose comm (or cgroup) has a rule is put in
 *     tgid_rule and a REQ_CLASSIFIED request goes out; a forked child takes its parent's rule;
 *   - violations: at sched_switch (raw tracepoint; current is the task leaving the CPU) a managed
 *     task that ran on a CPU outside its rule's mask is counted, and a REQ_VIOLATION goes out,
 *     once per thread per epoch;
 *   - hot regions: page faults of managed processes with a memory rule are counted per 2 MiB
 *     region per epoch; at hot_faults a REQ_HOT_REGION goes out, once per region per epoch.
 * Requests go on the `requests` ring buffer; Python's actuator serves them. A full ring buffer
 * is counted in counters[CNT_DROPS]. -DPIN_DIR="..." names the pinned maps' directory.
 */
#include <uapi/linux/ptrace.h>
#include "llamas.h"
#include "llamas_policy.h"

BPF_TABLE_PINNED("array", u32, u32, ctl, CTL_ENTRIES, PIN_DIR "/ctl");
BPF_TABLE_PINNED("array", u32, struct rule_value, rules, 2 * MAX_RULES, PIN_DIR "/rules");
BPF_TABLE_PINNED("hash", struct comm_key, u32, comm_rule, COMM_RULE_ENTRIES, PIN_DIR "/comm_rule");
BPF_TABLE_PINNED("hash", struct tgid_key, u32, tgid_rule, TGID_RULE_ENTRIES, PIN_DIR "/tgid_rule");
BPF_TABLE_PINNED("hash", struct cgroup_key, u32, cgroup_rule, CGROUP_RULE_ENTRIES, PIN_DIR "/cgroup_rule");
BPF_RINGBUF_OUTPUT(requests, 64);
BPF_TABLE("lru_hash", u32, u32, told, 65536);
BPF_TABLE("lru_hash", struct region_key, struct hot_count, hot, LLAMAS_MAX_REGIONS);
BPF_PERCPU_ARRAY(counters, u64, CNT_SLOTS);

static __always_inline void count(int slot)
{
    u64 *value = counters.lookup(&slot);
    if (value)
        (*value)++;
}

static __always_inline u32 ctl_word(u32 index)
{
    u32 *value = ctl.lookup(&index);
    return value ? *value : NO_POLICY;
}

static __always_inline void emit(u32 kind, u32 tgid, u32 tid, u32 rule, u64 value)
{
    struct request *req = requests.ringbuf_reserve(sizeof(struct request));
    if (!req) {
        count(CNT_DROPS);
        return;
    }
    req->kind = kind;
    req->tgid = tgid;
    req->tid = tid;
    req->rule = rule;
    req->value = value;
    requests.ringbuf_submit(req, 0);
    count(CNT_REQUESTS);
}

static __always_inline struct rule_value *rule_at(u32 slot, u32 rule)
{
    u32 index = slot * MAX_RULES + rule;
    return rules.lookup(&index);
}

/* The rule in force for a process, or NULL; its index in *rule_index. */
static __always_inline struct rule_value *managed(u32 tgid, u32 *rule_index)
{
    u32 slot = ctl_word(CTL_SLOT);
    if (slot == NO_POLICY || tgid == 0)
        return NULL;
    struct tgid_key key = {.slot = slot, .tgid = tgid};
    u32 *rule = tgid_rule.lookup(&key);
    if (!rule)
        return NULL;
    *rule_index = *rule;
    return rule_at(slot, *rule_index);
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 slot = ctl_word(CTL_SLOT);
    if (slot == NO_POLICY)
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct tgid_key tkey = {.slot = slot, .tgid = tgid};
    struct comm_key ckey = {.slot = slot};
    bpf_get_current_comm(&ckey.comm, sizeof(ckey.comm));
    u32 *rule = comm_rule.lookup(&ckey);
    if (!rule) {
        struct cgroup_key gkey = {.slot = slot, .cgroup_id = bpf_get_current_cgroup_id()};
        rule = cgroup_rule.lookup(&gkey);
    }
    if (rule) {
        u32 found = *rule;
        tgid_rule.update(&tkey, &found);
        count(CNT_CLASSIFIED);
        emit(REQ_CLASSIFIED, tgid, tgid, found, 0);
    } else if (ctl_word(CTL_FLAGS) & FLAG_EXE_RULES) {
        emit(REQ_EXEC, tgid, tgid, 0, 0);
    }
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 slot = ctl_word(CTL_SLOT);
    if (slot == NO_POLICY)
        return 0;
    struct tgid_key parent = {.slot = slot, .tgid = bpf_get_current_pid_tgid() >> 32};
    u32 *rule = tgid_rule.lookup(&parent);
    if (rule) {
        /* for a new thread child_pid is a thread id: an entry never looked up, harmless */
        struct tgid_key child = {.slot = slot, .tgid = args->child_pid};
        u32 found = *rule;
        tgid_rule.update(&child, &found);
    }
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_switch)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    u32 rule_index = 0;
    struct rule_value *value = managed(tgid, &rule_index);
    if (!value || !(value->flags & RULE_CPU))
        return 0;
    u32 cpu = bpf_get_smp_processor_id();
    if (cpu >= RULE_MASK_WORDS * 64)
        return 0;
    if (value->cpumask[(cpu >> 6) & (RULE_MASK_WORDS - 1)] & (1ULL << (cpu & 63)))
        return 0;
    count(CNT_VIOLATIONS);
    u32 epoch = ctl_word(CTL_EPOCH);
    u32 *last = told.lookup(&tid);
    if (last && *last == epoch)
        return 0;
    told.update(&tid, &epoch);
    emit(REQ_VIOLATION, tgid, tid, rule_index, cpu);
    return 0;
}

RAW_TRACEPOINT_PROBE(page_fault_user)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 rule_index = 0;
    struct rule_value *value = managed(tgid, &rule_index);
    if (!value || !(value->flags & RULE_MEMORY) || value->hot_faults == 0)
        return 0;
    u32 epoch = ctl_word(CTL_EPOCH);
    struct region_key rkey = {.tgid = tgid, .region = ctx->args[0] >> LLAMAS_REGION_SHIFT};
    struct hot_count fresh = {.faults = 0, .epoch = epoch};
    struct hot_count *seen = hot.lookup_or_try_init(&rkey, &fresh);
    if (!seen)
        return 0;
    if (seen->epoch != epoch) {
        seen->epoch = epoch;
        seen->faults = 0;
    }
    seen->faults++;
    if (seen->faults == value->hot_faults) {
        count(CNT_HOT);
        emit(REQ_HOT_REGION, tgid, (u32)id, rule_index, rkey.region);
    }
    return 0;
}
