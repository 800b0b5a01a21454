/* A deliberately imbalanced MPI program for the end-of-job profile: rank 0
 * sleeps SLEEP_MS (argv[1]) before a barrier, so the other ranks wait in
 * MPI_Barrier and rank 0 hardly does; then every rank r > 0 sends r
 * messages of 2 ints to rank 0, which receives them all. Per rank: one
 * MPI_Init, MPI_Comm_rank, MPI_Comm_size, MPI_Barrier and MPI_Finalize;
 * rank r > 0 makes r MPI_Send calls of 8 bytes, rank 0 makes
 * size * (size - 1) / 2 MPI_Recv calls of 8 bytes. */
#include <mpi.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    int rank, size, buf[2] = {1, 2};
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) {
        long ms = argc > 1 ? atol(argv[1]) : 0;
        struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&t, NULL);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        for (int i = 0; i < size * (size - 1) / 2; i++)
            MPI_Recv(buf, 2, MPI_INT, MPI_ANY_SOURCE, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        for (int i = 0; i < rank; i++)
            MPI_Send(buf, 2, MPI_INT, 0, 0, MPI_COMM_WORLD);
    }
    MPI_Finalize();
    return 0;
}
