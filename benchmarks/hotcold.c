/* The misplaced workload of benchmarks/convergence_lab.py: HOT pages it reads all the time, COLD
 * pages it wrote once and never reads again, and CHURN pages it maps, writes and unmaps every
 * 10 ms (the allocations a real program makes, which also give the probes something to count).
 *
 *   hotcold HOT COLD CHURN
 *
 * Prints "ready HOT_ADDRESS COLD_ADDRESS" once every page is written (the harness then places
 * them), starts on "go", and ends on "stop" or end of input. 4 KiB pages (THP off for its
 * mappings), so that page counts mean the same for every mover. */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static char *area(long pages, long page)
{
    char *p = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        exit(3);
    madvise(p, pages * page, MADV_NOHUGEPAGE);
    for (long i = 0; i < pages; i++)
        p[i * page] = 1;
    return p;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    long hot_pages = atol(argv[1]), cold_pages = atol(argv[2]), churn_pages = atol(argv[3]);
    long page = sysconf(_SC_PAGESIZE);
    char *hot = area(hot_pages, page), *cold = area(cold_pages, page);
    char line[32];
    printf("ready %p %p\n", (void *)hot, (void *)cold);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin) || strncmp(line, "go", 2) != 0)
        return 0;
    volatile unsigned long sink = 0;
    double churned = 0;
    struct pollfd in = {.fd = 0, .events = POLLIN};
    for (;;) {
        for (long i = 0; i < hot_pages; i++)
            sink += ((volatile char *)hot)[i * page];
        if (now() - churned >= 0.010) {
            munmap(area(churn_pages, page), churn_pages * page);
            churned = now();
            if (poll(&in, 1, 0) > 0)
                break; /* "stop", or the harness went away */
        }
    }
    return (int)(sink & 0);
}
