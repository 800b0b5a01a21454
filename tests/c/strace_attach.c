/* A long-running target for attach tests: two threads; the main one
 * writes one line per 20 ms to the file named by argv[1] (so progress is
 * visible), the other sleeps in a loop. Exits after argv[2] lines. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void *sleeper(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
        getppid();
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    FILE *f = fopen(argv[1], "w");
    if (!f) return 2;
    pthread_t t;
    pthread_create(&t, NULL, sleeper, NULL);
    int n = atoi(argv[2]);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%d\n", i);
        fflush(f);
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
