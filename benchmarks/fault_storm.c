/* A page-fault storm: THREADS threads each map MIB MiB of fresh private memory (THP off, so one
 * fault per 4 KiB page), write one byte per page, and unmap it, PASSES times. Prints the wall
 * seconds of those passes.
 *
 * Each thread does one more pass first, untimed; the timing starts when every thread has
 * finished it. The first pass brings the pages into the guest: this machine's hypervisor
 * takes back the memory a guest frees (virtio-balloon free page reporting, 2 MiB blocks a couple
 * of seconds after they are freed), so a storm that starts seconds after the last one faults in
 * the host as well, by an amount that depends on how long it waited. The timed passes reuse the
 * pages the pass before freed a moment earlier: the cost measured is the guest's fault path. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long bytes_per_thread;
static int passes;
static pthread_barrier_t warmed;

static void touch_all(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char *area = mmap(NULL, bytes_per_thread, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        exit(3);
    madvise(area, bytes_per_thread, MADV_NOHUGEPAGE);
    for (long off = 0; off < bytes_per_thread; off += page)
        ((volatile char *)area)[off] = 1;
    munmap(area, bytes_per_thread);
}

static void *storm(void *arg)
{
    (void)arg;
    touch_all();  /* untimed */
    pthread_barrier_wait(&warmed);
    for (int pass = 0; pass < passes; pass++)
        touch_all();
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    bytes_per_thread = (argc > 2 ? atol(argv[2]) : 1024) << 20;
    passes = argc > 3 ? atoi(argv[3]) : 1;
    if (threads < 1 || threads > 64 || passes < 1)
        return 2;
    pthread_t ids[64];
    struct timespec start, end;
    pthread_barrier_init(&warmed, NULL, threads + 1);
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, storm, NULL);
    pthread_barrier_wait(&warmed);
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("%.6f\n", (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9);
    return 0;
}
