/* Forking: a fork child, a vfork child and a grandchild, each making a
 * known number of getppid calls; the parent waits for all and exits with
 * the sum of their exit codes (1 + 2 + 3 = 6). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void calls(int n) {
    for (int i = 0; i < n; i++) getppid();
}

int main(void) {
    int total = 0, st;
    /* A traced process sees even ignored signals: a SIGCHLD landing while
     * it waits for another child would interrupt and restart the wait4 (a
     * second call) at a timing-dependent moment. Blocked, it cannot. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    pid_t a = fork();
    if (a == 0) {
        calls(10);
        pid_t g = fork();
        if (g == 0) {
            calls(5);
            _exit(3);
        }
        waitpid(g, &st, 0);
        _exit(WEXITSTATUS(st) == 3 ? 1 : 50);
    }
    pid_t v = vfork();
    if (v == 0) _exit(2);
    waitpid(a, &st, 0);
    total += WEXITSTATUS(st);
    waitpid(v, &st, 0);
    total += WEXITSTATUS(st);
    calls(7);
    return total + 3;
}
