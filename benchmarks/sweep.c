/* The workload of benchmarks/access_lab.py: sweeps a MIB-MiB buffer over and over, reading
 * every 64-byte line and writing one line in eight (a memory-bound loop with a working set far
 * beyond the caches), and prints the passes it completed in SECONDS.
 *
 *   sweep MIB SECONDS
 *
 * Prints "ready" once every page is written, starts on any input line, prints "passes N". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    long size = atol(argv[1]) << 20;
    double seconds = atof(argv[2]);
    char *buffer = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buffer == MAP_FAILED)
        return 3;
    for (long i = 0; i < size; i += 4096)
        buffer[i] = 1;
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin))
        return 4;
    volatile unsigned long sink = 0;
    long passes = 0;
    double end = now() + seconds;
    while (now() < end) {
        for (long i = 0; i < size; i += 64) {
            sink += ((volatile char *)buffer)[i];
            if ((i & 511) == 0)
                ((volatile char *)buffer)[i] = (char)i;
        }
        passes++;
    }
    printf("passes %ld\n", passes);
    return (int)(sink & 0);
}
