/* MPI calls in timed steps, for the fault tests: each rank writes its pid to
 * DIR/pid.RANK, then makes STEPS MPI_Allreduce of one int (STEPS 0: until
 * killed), appending "STEP MONOTONIC_NS" to DIR/progress.RANK after each one
 * returns, and sleeping SLEEP_MS between steps.
 * Usage: fault_mpi_steps STEPS SLEEP_MS DIR */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: fault_mpi_steps STEPS SLEEP_MS DIR\n");
        return 2;
    }
    long steps = atol(argv[1]), sleep_ms = atol(argv[2]);
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char path[4096];
    snprintf(path, sizeof path, "%s/pid.%d", argv[3], rank);
    FILE *pid = fopen(path, "w");
    snprintf(path, sizeof path, "%s/progress.%d", argv[3], rank);
    FILE *progress = fopen(path, "w");
    if (!pid || !progress) {
        perror(path);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    fprintf(pid, "%ld\n", (long)getpid());
    fclose(pid);
    struct timespec pause = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    for (long i = 1; steps == 0 || i <= steps; i++) {
        int one = 1, sum = 0;
        MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (sum != size) {
            fprintf(stderr, "rank %d: sum %d\n", rank, sum);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        fprintf(progress, "%ld %lld\n", i, (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
        fflush(progress);
        nanosleep(&pause, NULL);
    }
    fclose(progress);
    MPI_Finalize();
    if (rank == 0)
        printf("fault_mpi_steps: %ld steps on %d ranks\n", steps, size);
    return 0;
}
