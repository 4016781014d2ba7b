/* A child for the host and lab tests: touches fresh private anonymous pages on command, so a
 * test can bracket exactly that work. Written in C so the child itself faults on nothing else.
 *
 * stdin: "write N" / "read N" maps N new pages (THP off, so each is one 4 KiB fault) and
 * touches each once, then prints "done ADDRESS" (the mapping's start, for move_pages);
 * "spin SECONDS" re-reads every page mapped so far for that long, then prints "done";
 * "spinlast SECONDS" does the same for the last mapping only; "shmread N" maps N pages of a
 * fresh memfd (tmpfs) and reads each, so each read fault allocates a page; "churn N" writes N new
 * pages like "write" and unmaps the previous churn mapping, so a child can fault for as long as a
 * test runs with a bounded footprint (churn mappings are not among those "spin" reads); "exit"
 * ends; "spinhalf SECONDS" re-reads the second half of the last mapping only; "mix SECONDS"
 * writes every page of the second-last mapping and reads every page of the last, over and over;
 * each then prints "done"; "pacedwrite N" writes N new pages like "write", one every 200 us,
 * slower than the rate past which the probes sample (bpf/llamas.h). Each mapping is
 * followed by a PROT_NONE guard page, so mappings stay apart as the kernel's VMAs. */
#define _GNU_SOURCE
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
    char command[32];
    char *areas[64];
    long sizes[64];
    int nareas = 0;
    long count;
    long page = sysconf(_SC_PAGESIZE);
    volatile unsigned long sink = 0;
    char *churned = NULL;
    long churned_pages = 0;
    while (scanf("%31s", command) == 1 && strcmp(command, "exit") != 0) {
        if (scanf("%ld", &count) != 1)
            return 2;
        if (strcmp(command, "spin") == 0 || strcmp(command, "spinlast") == 0) {
            time_t end = time(NULL) + count;
            int first = strcmp(command, "spin") == 0 ? 0 : nareas - 1;
            while (time(NULL) < end)
                for (int a = first < 0 ? 0 : first; a < nareas; a++)
                    for (long i = 0; i < sizes[a]; i++)
                        sink += ((volatile char *)areas[a])[i * page];
            printf("done\n");
            fflush(stdout);
            continue;
        }
        if (strcmp(command, "spinhalf") == 0 || strcmp(command, "mix") == 0) {
            time_t end = time(NULL) + count;
            int half = strcmp(command, "spinhalf") == 0;
            if (nareas < (half ? 1 : 2))
                return 5;
            char *read_area = areas[nareas - 1];
            long read_from = half ? sizes[nareas - 1] / 2 : 0;
            char *write_area = half ? NULL : areas[nareas - 2];
            while (time(NULL) < end) {
                for (long i = read_from; i < sizes[nareas - 1]; i++)
                    sink += ((volatile char *)read_area)[i * page];
                if (write_area != NULL)
                    for (long i = 0; i < sizes[nareas - 2]; i++)
                        ((volatile char *)write_area)[i * page] = (char)i;
            }
            printf("done\n");
            fflush(stdout);
            continue;
        }
        if (strcmp(command, "shmread") == 0) {
            int fd = memfd_create("lt-shm", 0);
            char *shm = fd < 0 || ftruncate(fd, count * page) != 0 ? MAP_FAILED
                      : mmap(NULL, count * page, PROT_READ, MAP_SHARED, fd, 0);
            if (shm == MAP_FAILED)
                return 4;
            for (long i = 0; i < count; i++)
                sink += ((volatile char *)shm)[i * page];
            if (nareas < 64) {
                areas[nareas] = shm;
                sizes[nareas++] = count;
            }
            printf("done %p\n", (void *)shm);
            fflush(stdout);
            continue;
        }
        char *area = mmap(NULL, (count + 1) * page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (area == MAP_FAILED || mprotect(area + count * page, page, PROT_NONE) != 0)
            return 3;
        madvise(area, count * page, MADV_NOHUGEPAGE);
        int churn = strcmp(command, "churn") == 0;
        int paced = strcmp(command, "pacedwrite") == 0;
        int write = churn || paced || strcmp(command, "write") == 0;
        struct timespec pause = {0, 200000};
        for (long i = 0; i < count; i++) {
            if (paced)
                nanosleep(&pause, NULL);
            if (write)
                ((volatile char *)area)[i * page] = 1;
            else
                sink += ((volatile char *)area)[i * page];
        }
        if (churn) {
            if (churned != NULL)
                munmap(churned, (churned_pages + 1) * page);
            churned = area;
            churned_pages = count;
        } else if (nareas < 64) {
            areas[nareas] = area;
            sizes[nareas++] = count;
        }
        printf("done %p\n", (void *)area);
        fflush(stdout);
    }
    return (int)(sink & 0);
}
