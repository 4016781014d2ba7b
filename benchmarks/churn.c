/* benchmarks/churn.c: N short-lived processes, one after another (a few at a time), each a
 * fork + exec of a tiny program that faults in a page and exits: what a build, a shell loop
 * or a cron-heavy host does to a daemon that tracks processes.
 * Usage: churn N PARALLEL PROGRAM   (prints "done N" at the end) */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    long total = atol(argv[1]), parallel = atol(argv[2]), started = 0, running = 0;
    while (started < total || running > 0) {
        while (running < parallel && started < total) {
            pid_t pid = fork();
            if (pid == 0) {
                execl(argv[3], argv[3], (char *)NULL);
                _exit(127);
            }
            if (pid > 0) {
                started++;
                running++;
            }
        }
        if (wait(NULL) > 0)
            running--;
    }
    printf("done %ld\n", started);
    return 0;
}
