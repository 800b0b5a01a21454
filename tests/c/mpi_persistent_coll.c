/* Open MPI's persistent collectives (mpi-ext.h): one MPIX_Allreduce_init of
 * 4 ints, started and waited for 3 times, then freed. Rank 0 prints the
 * last element of the reduction. */
#include <mpi.h>
#include <mpi-ext.h>
#include <stdio.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, s[4] = {1, 2, 3, 4}, r[4] = {0};
    MPI_Request req;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPIX_Allreduce_init(s, r, 4, MPI_INT, MPI_SUM, MPI_COMM_WORLD, MPI_INFO_NULL, &req);
    for (int i = 0; i < 3; i++) {
        MPI_Start(&req);
        MPI_Wait(&req, MPI_STATUS_IGNORE);
    }
    MPI_Request_free(&req);
    if (rank == 0)
        printf("mpi_persistent_coll: %d\n", r[3]);
    MPI_Finalize();
    return 0;
}
