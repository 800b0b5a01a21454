/* The C half of tests/fortran/mpi_mixed.F90: called from Fortran, it makes
 * one MPI_Allreduce of 2 doubles and one MPI_Barrier through the C binding. */
#include <mpi.h>

void c_part(void) {
    double d[2] = {1.0, 2.0}, s[2];
    MPI_Allreduce(d, s, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
}
