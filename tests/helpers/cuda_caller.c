/* Calls the CUDA driver API K times with B bytes each, through whatever libcuda.so.1 the dynamic
 * linker finds (the test points LD_LIBRARY_PATH at the stub). Usage: cuda_caller K B
 * Waits for a line on stdin before starting, so the test can attach first. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

typedef uint64_t CUdeviceptr;
int cuCtxCreate_v2(void **, unsigned, int);
int cuMemAlloc_v2(CUdeviceptr *, size_t);
int cuMemAllocManaged(CUdeviceptr *, size_t, unsigned);
int cuMemFree_v2(CUdeviceptr);
int cuMemcpyHtoD_v2(CUdeviceptr, const void *, size_t);
int cuMemcpyDtoH_v2(void *, CUdeviceptr, size_t);
int cuMemcpyHtoDAsync_v2(CUdeviceptr, const void *, size_t, void *);
int cuMemcpyDtoHAsync_v2(void *, CUdeviceptr, size_t, void *);
int cuLaunchKernel(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **, void **);
int cuMemPrefetchAsync(CUdeviceptr, size_t, int, void *);
int cuMemAdvise(CUdeviceptr, size_t, int, int);

int main(int argc, char **argv)
{
    int k = atoi(argv[1]);
    size_t b = strtoull(argv[2], NULL, 10);
    char line[16];
    if (!fgets(line, sizeof(line), stdin))
        return 1;
    void *ctx;
    cuCtxCreate_v2(&ctx, 0, 0);
    for (int i = 0; i < k; i++) {
        CUdeviceptr d, m;
        cuMemAlloc_v2(&d, b);
        cuMemAllocManaged(&m, b, 1);
        cuMemcpyHtoD_v2(d, line, b);
        cuMemcpyDtoH_v2(line, d, b);
        cuMemcpyHtoDAsync_v2(d, line, b, NULL);
        cuMemcpyDtoHAsync_v2(line, d, b, NULL);
        cuLaunchKernel(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
        cuMemPrefetchAsync(m, b, 0, NULL);
        cuMemAdvise(m, b, 1, 0);
        cuMemFree_v2(d);
        cuMemFree_v2(m);
    }
    printf("done\n");
    fflush(stdout);
    return 0;
}
