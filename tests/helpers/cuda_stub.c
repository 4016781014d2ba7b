/* A stand-in for the CUDA driver library (libcuda.so.1) with the same exported names and
 * argument shapes, so the uprobes attach to real function entries. Nothing here touches a GPU. */
#include <stddef.h>
#include <stdint.h>

typedef int CUresult;
typedef uint64_t CUdeviceptr;
static uint64_t next_ptr = 0x100000;

CUresult cuCtxCreate_v2(void **ctx, unsigned flags, int dev) { (void)flags; (void)dev; *ctx = (void *)1; return 0; }
static CUresult fake_alloc(CUdeviceptr *dptr, size_t bytes) { *dptr = next_ptr; next_ptr += bytes + 4096; return 0; }
CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes) { return fake_alloc(dptr, bytes); }
CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytes, unsigned flags) { (void)flags; return fake_alloc(dptr, bytes); }
CUresult cuMemFree_v2(CUdeviceptr dptr) { (void)dptr; return 0; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) { (void)dst; (void)src; (void)n; return 0; }
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) { (void)dst; (void)src; (void)n; return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, void *s) { (void)dst; (void)src; (void)n; (void)s; return 0; }
CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, void *s) { (void)dst; (void)src; (void)n; (void)s; return 0; }
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shared, void *stream, void **params, void **extra)
{ (void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shared; (void)stream; (void)params; (void)extra; return 0; }
CUresult cuMemPrefetchAsync(CUdeviceptr p, size_t n, int dev, void *s) { (void)p; (void)n; (void)dev; (void)s; return 0; }
CUresult cuMemAdvise(CUdeviceptr p, size_t n, int advice, int dev) { (void)p; (void)n; (void)advice; (void)dev; return 0; }
