/* cuda.c: GPU driver calls and bytes per process, from uprobes on the CUDA driver library
 * (libcuda.so.1). Python gives every probed symbol an event index and a handler kind, and
 * -DCUDA_HANDLERS expands to one handler per present symbol (e.g. ARG3(5) for cuMemcpyHtoD_v2),
 * so each symbol keeps its own calls and bytes.
 *
 * The byte count is a plain integer argument of the driver API (never a struct):
 *   cuMemAlloc_v2(dptr*, bytesize)                     -> arg 2
 *   cuMemAllocManaged(dptr*, bytesize, flags)          -> arg 2
 *   cuMemcpyHtoD_v2(dst, src, bytes), ...Async_v2      -> arg 3
 *   cuMemcpyDtoH_v2(dst, src, bytes), ...Async_v2      -> arg 3
 *   cuMemPrefetchAsync(ptr, count, device, stream)     -> arg 2
 *   cuMemAdvise(ptr, count, advice, device)            -> arg 2
 * cuMemFree_v2(dptr) has no size: the allocation's size is remembered from the return of
 * cuMemAlloc_v2/cuMemAllocManaged (reading *dptr once the call succeeded) and looked up.
 */
#include <uapi/linux/ptrace.h>
#include "llamas.h"

struct alloc_key {
    u32 tgid;
    u32 pad;
    u64 dptr;
};

struct pending_alloc {
    u64 dptr_addr;
    u64 bytes;
};

BPF_TABLE("lru_percpu_hash", struct gpu_key, struct gpu_counts, gpu_calls, LLAMAS_MAX_PROCS);
BPF_HASH(pending, u64, struct pending_alloc, 4096);
BPF_TABLE("lru_hash", struct alloc_key, u64, live_allocs, 65536);
LLAMAS_HEALTH(cuda);

LLAMAS_LOOKUP_OR_INIT(gpu_calls, struct gpu_key, struct gpu_counts, cuda, PROC);

static __always_inline void account(u32 event, u64 bytes)
{
    struct gpu_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .event = event};
    struct gpu_counts *counts = gpu_calls_get(&key);
    if (counts) {
        counts->calls++;
        counts->bytes += bytes;
    }
}

static __always_inline void alloc_entry(struct pt_regs *ctx, u32 event)
{
    u64 bytes = PT_REGS_PARM2(ctx);
    account(event, bytes);
    u64 id = bpf_get_current_pid_tgid();
    struct pending_alloc p = {.dptr_addr = PT_REGS_PARM1(ctx), .bytes = bytes};
    pending.update(&id, &p);
}

int alloc_return(struct pt_regs *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct pending_alloc *p = pending.lookup(&id);
    if (!p)
        return 0;
    if (PT_REGS_RC(ctx) == 0) {  /* CUDA_SUCCESS */
        struct alloc_key key = {.tgid = id >> 32};
        if (bpf_probe_read_user(&key.dptr, sizeof(key.dptr), (void *)p->dptr_addr) == 0) {
            u64 bytes = p->bytes;
            live_allocs.update(&key, &bytes);
        }
    }
    pending.delete(&id);
    return 0;
}

static __always_inline void free_entry(struct pt_regs *ctx, u32 event)
{
    struct alloc_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .dptr = PT_REGS_PARM1(ctx)};
    u64 *bytes = live_allocs.lookup(&key);
    account(event, bytes ? *bytes : 0);
    if (bytes)
        live_allocs.delete(&key);
}

/* Handlers by event index; Python's symbol table (probes/cuda.py) says which symbol gets which
 * index and which handler kind. CALL: count only; ARGn: count and add argument n as bytes. */
#define CALL(i) int on_call_##i(struct pt_regs *ctx) { account(i, 0); return 0; }
#define ARG2(i) int on_arg2_##i(struct pt_regs *ctx) { account(i, PT_REGS_PARM2(ctx)); return 0; }
#define ARG3(i) int on_arg3_##i(struct pt_regs *ctx) { account(i, PT_REGS_PARM3(ctx)); return 0; }
#define ALLOC(i) int on_alloc_##i(struct pt_regs *ctx) { alloc_entry(ctx, i); return 0; }
#define FREE(i) int on_free_##i(struct pt_regs *ctx) { free_entry(ctx, i); return 0; }

CUDA_HANDLERS
