/* The smallest MPI program: each rank prints its rank. Linked statically
 * to MPICH by a test, to check that `-m` says it cannot count it. */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
    int rank;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0)
        printf("mpi_hello: rank %d\n", rank);
    MPI_Finalize();
    return 0;
}
