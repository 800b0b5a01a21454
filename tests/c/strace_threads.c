/* Multi-threaded: THREADS threads each make ROUNDS getppid and write
 * calls (100 bytes each), then join. The joins spin on
 * pthread_tryjoin_np (no syscall) so that no futex wait, whose count
 * depends on timing, is ever made. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define THREADS 4
#define ROUNDS 50

static int null_fd;

static void *work(void *arg) {
    char buf[100] = {0};
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        getppid();
        if (write(null_fd, buf, sizeof buf) != sizeof buf) exit(2);
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    null_fd = open("/dev/null", O_WRONLY);
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < THREADS; i++)
        while (pthread_tryjoin_np(t[i], NULL) != 0) {
        }
    return 0;
}
