/* Keeps MPI busy until told to stop, for the live page's test: each lap
 * rank 0 works 20 ms while the others wait in MPI_Barrier, then a token
 * goes round the ring and an MPI_Allreduce tells every rank whether the
 * file named by argv[1] exists yet (rank 0 looks). Prints the laps done. */
#include <mpi.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rank, size, laps = 0, stop = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 2) {
        if (rank == 0)
            fprintf(stderr, "usage: mpi_page STOPFILE\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    while (!stop) {
        int token = laps, seen = 0;
        if (rank == 0) {
            struct timespec work = {0, 20 * 1000 * 1000};
            nanosleep(&work, NULL);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0) {
            MPI_Send(&token, 1, MPI_INT, 1 % size, 0, MPI_COMM_WORLD);
            MPI_Recv(&token, 1, MPI_INT, size - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(&token, 1, MPI_INT, rank - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(&token, 1, MPI_INT, (rank + 1) % size, 0, MPI_COMM_WORLD);
        }
        if (rank == 0)
            seen = access(argv[1], F_OK) == 0;
        MPI_Allreduce(&seen, &stop, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        laps++;
    }
    if (rank == 0)
        printf("mpi_page: %d laps on %d ranks\n", laps, size);
    MPI_Finalize();
    return 0;
}
