/* Signals under tracing: handled signals are delivered, job control
 * (SIGSTOP/SIGCONT of a child) behaves as usual. Prints what it saw. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_usr1(int sig) {
    (void)sig;
    got++;
}

int main(void) {
    /* SIGCHLD is ignored but, as any signal of a traced process, it would
     * interrupt (and restart) a wait4 at a timing-dependent moment. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    signal(SIGUSR1, on_usr1);
    for (int i = 0; i < 3; i++) kill(getpid(), SIGUSR1);
    int st, go[2];
    char byte;
    if (pipe(go) != 0) return 2;
    pid_t c = fork();
    if (c == 0) {
        raise(SIGSTOP);
        /* Stay alive until the parent has seen the continue. */
        if (read(go[0], &byte, 1) != 1) _exit(2);
        _exit(7);
    }
    waitpid(c, &st, WUNTRACED);
    int stopped = WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP;
    kill(c, SIGCONT);
    waitpid(c, &st, WCONTINUED);
    int continued = WIFCONTINUED(st);
    if (write(go[1], "x", 1) != 1) return 2;
    waitpid(c, &st, 0);
    printf("usr1=%d stopped=%d continued=%d child=%d\n", (int)got, stopped, continued, WEXITSTATUS(st));
    fflush(stdout);
    return 0;
}
