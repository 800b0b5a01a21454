/* Forks in an MPI rank while the daemon is stopped, for the fault tests:
 * each rank makes one MPI_Comm_rank per round and forks a child that
 * counts nothing and exits at once, PAUSE_MS apart; the parent times each
 * fork() from the call to its return. Then the rank writes the longest,
 * in nanoseconds, to DIR/forked.RANK and waits for DIR/go before
 * MPI_Barrier and MPI_Finalize.
 * Usage: fault_mpi_fork ROUNDS PAUSE_MS DIR */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: fault_mpi_fork ROUNDS PAUSE_MS DIR\n");
        return 2;
    }
    int rounds = atoi(argv[1]), pause_ms = atoi(argv[2]), rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    struct timespec pause = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
    long long worst = 0;
    fflush(stdout);
    for (int i = 0; i < rounds; i++) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        long long t0 = now_ns();
        pid_t pid = fork();
        if (pid == 0)
            exit(0);
        long long took = now_ns() - t0;
        if (took > worst)
            worst = took;
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fault_mpi_fork: rank %d: child %d failed\n", rank, i);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        nanosleep(&pause, NULL);
    }
    char path[4096], tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/.forked.%d", argv[3], rank);
    snprintf(path, sizeof path, "%s/forked.%d", argv[3], rank);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%lld\n", worst) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        perror(path);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    snprintf(path, sizeof path, "%s/go", argv[3]);
    while (access(path, F_OK) != 0)
        usleep(10000);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0)
        printf("fault_mpi_fork: %d forks on %d ranks\n", rounds, size);
    return 0;
}
