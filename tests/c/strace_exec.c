/* Exec-ing: stage "main" re-executes itself from the main thread
 * ("again"), which then execs from a second thread while the main
 * thread is blocked ("thread"), ending in stage "last".
 *
 * The second thread sleeps before its exec so that the main thread is
 * surely inside pause() by then: an exec that cuts the main thread in the
 * middle of pthread_create's last rt_sigprocmask would leave it to timing
 * whether a tracer saw that call complete, and the counts would differ
 * from run to run. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *self;

static void *exec_from_thread(void *arg) {
    (void)arg;
    char *argv[] = {self, "last", NULL};
    struct timespec settle = {0, 300 * 1000 * 1000};
    nanosleep(&settle, NULL);
    execv(self, argv);
    _exit(2);
}

int main(int argc, char **argv) {
    self = argv[0];
    const char *stage = argc > 1 ? argv[1] : "main";
    if (strcmp(stage, "main") == 0) {
        getppid();
        char *next[] = {self, "again", NULL};
        execv(self, next);
        return 2;
    }
    if (strcmp(stage, "again") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, exec_from_thread, NULL);
        for (;;) pause();
    }
    for (int i = 0; i < 3; i++) getppid();
    return 5;
}
