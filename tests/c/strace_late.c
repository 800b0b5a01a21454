/* For the late-proxy test: 100 getppid calls, then "ready" on stdout,
 * then waits (polling) until the file argv[1] exists, then 50 more
 * getppid calls: 150 in all. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    for (int i = 0; i < 100; i++) getppid();
    printf("ready\n");
    fflush(stdout);
    while (access(argv[1], F_OK) != 0) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 50; i++) getppid();
    return 0;
}
