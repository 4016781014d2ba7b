/* llamas_policy.h: the pinned policy maps and the enforcement requests, shared by bpf/enforce.c
 * and Python, which reads the defines and struct layouts from this file itself
 * (llamas_ebpf/bpf_headers.py; used by llamas_ebpf/policy/maps.py and llamas_ebpf/enforce.py). */
#ifndef LLAMAS_POLICY_H
#define LLAMAS_POLICY_H

#define MAX_RULES 1024
#define RULE_MASK_WORDS 4         /* u64 words of a rule's CPU mask: CPUs 0-255 */
#define COMM_RULE_ENTRIES 4096
#define TGID_RULE_ENTRIES 65536
#define CGROUP_RULE_ENTRIES 1024
#define NO_POLICY 0xFFFFFFFF
#define CTL_SLOT 0
#define CTL_EPOCH 1
#define CTL_FLAGS 2
#define CTL_ENTRIES 4
#define FLAG_EXE_RULES 1
#define RULE_CPU 1
#define RULE_MEMORY 2

struct rule_value {
    u64 cpumask[RULE_MASK_WORDS];
    s32 home_node;
    s32 demote_node;
    u32 hot_faults;
    u32 flags;
};

struct comm_key {
    u32 slot;
    char comm[16];
};

struct tgid_key {
    u32 slot;
    u32 tgid;
};

struct cgroup_key {
    u32 slot;
    u32 pad;
    u64 cgroup_id;
};

#define REQ_CLASSIFIED 1          /* a new process took a rule at exec: pin it */
#define REQ_VIOLATION 2           /* a managed thread ran on a CPU outside its rule (value: CPU) */
#define REQ_HOT_REGION 3          /* a 2 MiB region reached hot_faults (value: region number) */
#define REQ_EXEC 4                /* a process exec'd while exe rules exist: classify it */

struct request {
    u32 kind;
    u32 tgid;
    u32 tid;
    u32 rule;
    u64 value;
};

/* counters[] slots */
#define CNT_VIOLATIONS 0
#define CNT_REQUESTS 1
#define CNT_DROPS 2
#define CNT_CLASSIFIED 3
#define CNT_HOT 4
#define CNT_SLOTS 5

struct hot_count {
    u32 faults;
    u32 epoch;
};

#endif
