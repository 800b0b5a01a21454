/* Restarted and interrupted calls: blocks in read on a pipe nobody writes
 * to; each SIGUSR1 (handler with SA_RESTART) interrupts it and the kernel
 * restarts it, a SIGUSR2 (handler without SA_RESTART) ends it with EINTR.
 * Prints "pid N" first, so that the signals can be sent while it is
 * blocked, and "u" from the handler of each SIGUSR1 (async-signal-safe
 * write), then what it saw. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t restarted;

static void on_usr1(int sig) {
    (void)sig;
    restarted++;
    if (write(1, "u\n", 2) != 2) _exit(2);
}

static void on_usr2(int sig) {
    (void)sig;
}

int main(void) {
    int p[2];
    char byte;
    struct sigaction sa;
    if (pipe(p) != 0) return 2;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sa.sa_flags = 0;
    sigaction(SIGUSR2, &sa, NULL);
    printf("pid %d\n", (int)getpid());
    fflush(stdout);
    ssize_t n = read(p[0], &byte, 1);
    printf("read=%zd errno=%s restarted=%d\n", n, n < 0 && errno == EINTR ? "EINTR" : "other", (int)restarted);
    return 0;
}
