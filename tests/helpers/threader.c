/* A multi-threaded child for the policy tests: starts N threads that sleep, and on "spawn" from
 * stdin starts one more; after each command it prints "done" and its thread count. The test
 * copies it under a name of its own, so that a comm rule takes it and nothing else. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *idle(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 3;
    pthread_t id;
    for (int i = 0; i < threads; i++)
        pthread_create(&id, NULL, idle, NULL);
    printf("done %d\n", threads + 1);
    fflush(stdout);
    char line[32];
    while (fgets(line, sizeof(line), stdin)) {
        if (strncmp(line, "spawn", 5) == 0) {
            pthread_create(&id, NULL, idle, NULL);
            threads++;
        }
        printf("done %d\n", threads + 1);
        fflush(stdout);
    }
    return 0;
}
