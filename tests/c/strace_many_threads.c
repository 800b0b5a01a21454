/* More threads alive at once than `tau_strace --max-threads 3` follows:
 * creates THREADS threads, which wait (spinning, no syscall) until all
 * exist; thread i (1..THREADS) then writes i bytes to /dev/null and calls
 * getppid ROUNDS times. The joins spin on pthread_tryjoin_np (no futex
 * wait, whose count depends on timing). Prints "6 threads done". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define THREADS 6
#define ROUNDS 50

static int null_fd;
static int go;

static void *work(void *arg) {
    static const char buf[THREADS] = {0};
    long i = (long)arg;
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
    if (write(null_fd, buf, i) != i) exit(2);
    for (int r = 0; r < ROUNDS; r++) getppid();
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    null_fd = open("/dev/null", O_WRONLY);
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, work, (void *)(i + 1)) != 0) return 2;
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < THREADS; i++)
        while (pthread_tryjoin_np(t[i], NULL) != 0) {
        }
    printf("%d threads done\n", THREADS);
    return 0;
}
