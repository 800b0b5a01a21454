! A Fortran program that also calls MPI from C (tests/c/mpi_mixed_part.c):
! each call is counted once, in the series of its function, whichever
! language made it.
program mpi_mixed
  implicit none
  include 'mpif.h'
  interface
    subroutine c_part() bind(C, name='c_part')
    end subroutine c_part
  end interface
  integer :: ierr, one, n, rank

  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  one = 1
  call MPI_Allreduce(one, n, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD, ierr)
  call c_part()
  call MPI_Barrier(MPI_COMM_WORLD, ierr)
  if (rank == 0) print '(a, i0, a)', 'mpi_mixed: ', n, ' ranks'
  call MPI_Finalize(ierr)
end program mpi_mixed
