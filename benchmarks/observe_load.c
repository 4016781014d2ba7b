/* One of many live processes for the observe benchmark: every PERIOD_MS it maps a fresh page,
 * touches it and unmaps it, so it faults (and shows up in the probes) every interval. */
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long period_ms = argc > 1 ? atol(argv[1]) : 200;
    struct timespec pause = {period_ms / 1000, (period_ms % 1000) * 1000000L};
    for (;;) {
        char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page != MAP_FAILED) {
            page[0] = 1;
            munmap(page, 4096);
        }
        nanosleep(&pause, NULL);
    }
}
