/* A task-migration storm: the process moves itself between CPU 0 and CPU 1 COUNT times
 * (sched_setaffinity to the other CPU each time), so sched:sched_migrate_task fires COUNT times. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 200000;
    cpu_set_t set;
    for (long i = 0; i < count; i++) {
        CPU_ZERO(&set);
        CPU_SET(i & 1, &set);
        if (sched_setaffinity(0, sizeof(set), &set) != 0)
            return 1;
    }
    return 0;
}
