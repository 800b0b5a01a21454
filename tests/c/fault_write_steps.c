/* Traced-program steps, for the fault tests: STEPS times (0: until killed)
 * one write of SIZE bytes to FILE (opened for appending), then a sleep of
 * SLEEP_MS. Exits with status 4 so the test sees the status relayed.
 * Usage: fault_write_steps STEPS SLEEP_MS SIZE FILE */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: fault_write_steps STEPS SLEEP_MS SIZE FILE\n");
        return 2;
    }
    long steps = atol(argv[1]), sleep_ms = atol(argv[2]);
    size_t size = (size_t)atol(argv[3]);
    char *buf = malloc(size);
    int fd = open(argv[4], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (!buf || fd < 0) {
        perror(argv[4]);
        return 2;
    }
    memset(buf, 'x', size);
    struct timespec pause = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    for (long i = 1; steps == 0 || i <= steps; i++) {
        if (write(fd, buf, size) != (ssize_t)size)
            return 3;
        nanosleep(&pause, NULL);
    }
    return 4;
}
