/* An extension module linked to MPI, like mpi4py's: loaded by a program
 * that is not, with RTLD_LOCAL, so MPI is not in the global scope. */
#include <mpi.h>
#include <stdio.h>

int plugin_main(void) {
    int rank, size, sum = 0, one = 1;
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("mpi_plugin: %d ranks\n", sum);
    MPI_Finalize();
    return sum == size ? 0 : 1;
}
