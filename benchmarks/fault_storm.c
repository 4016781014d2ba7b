/* A page-fault storm: THREADS threads each map MIB MiB of fresh private memory (THP off, so one
 * fault per 4 KiB page), write one byte per page, and unmap it. Prints the wall seconds. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long bytes_per_thread;

static void *storm(void *arg)
{
    (void)arg;
    long page = sysconf(_SC_PAGESIZE);
    char *area = mmap(NULL, bytes_per_thread, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        exit(3);
    madvise(area, bytes_per_thread, MADV_NOHUGEPAGE);
    for (long off = 0; off < bytes_per_thread; off += page)
        ((volatile char *)area)[off] = 1;
    munmap(area, bytes_per_thread);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    bytes_per_thread = (argc > 2 ? atol(argv[2]) : 1024) << 20;
    pthread_t ids[64];
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, storm, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("%.6f\n", (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9);
    return 0;
}
