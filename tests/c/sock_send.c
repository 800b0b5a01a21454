/* Connects to the UNIX socket argv[1], writes all of standard input to it,
 * then copies what the peer answers to standard output until it closes or
 * stays silent for argv[2] milliseconds (default 2000). Lets a test speak
 * the protocol as another user (run under setpriv). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sock_send SOCKET [SILENCE_MS] < bytes\n");
        return 2;
    }
    int quiet_ms = argc > 2 ? atoi(argv[2]) : 2000;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("sock_send: connect");
        return 1;
    }
    char buf[65536];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w <= 0) {
                perror("sock_send: write");
                return 1;
            }
            off += w;
        }
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, quiet_ms) == 1 && (n = read(fd, buf, sizeof buf)) > 0) {
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) return 1;
    }
    return 0;
}
