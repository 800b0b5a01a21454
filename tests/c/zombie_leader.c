/* A collector whose thread-group leader exits first: main() calls
 * pthread_exit while a second thread speaks for the process. That thread
 * sends the bytes of file argv[2] to the UNIX socket argv[1] and reads
 * until the daemon closes, waits argv[4] milliseconds (the leader is a
 * zombie meanwhile, the process alive), then does the same with argv[3]. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char **args;

static void session(const char *file) {
    FILE *f = fopen(file, "rb");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, args[1], sizeof addr.sun_path - 1);
    if (!f || fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("zombie_leader");
        exit(1);
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (write(fd, buf, n) != (ssize_t)n) {
            perror("zombie_leader: write");
            exit(1);
        }
    }
    fclose(f);
    shutdown(fd, SHUT_WR);
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
}

static void *speaker(void *unused) {
    (void)unused;
    session(args[2]);
    long ms = atol(args[4]);
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    session(args[3]);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: zombie_leader SOCKET FIRST SECOND PAUSE_MS\n");
        return 2;
    }
    args = argv;
    pthread_t t;
    if (pthread_create(&t, NULL, speaker, NULL) != 0) return 1;
    pthread_exit(NULL);
}
