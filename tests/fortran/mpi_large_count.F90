! use mpi_f08 with INTEGER(MPI_COUNT_KIND) counts, which MPICH binds to
! its `_large_` entry points (the C `_c` functions): rank 0 sends 3
! integers to rank 1, then every rank reduces 4 integers in place.
program mpi_large_count
  use mpi_f08
  implicit none
  integer :: rank, buf(4)
  integer(kind=MPI_COUNT_KIND) :: three = 3, four = 4

  call MPI_Init()
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  buf = [1, 2, 3, 4]
  if (rank == 0) call MPI_Send(buf, three, MPI_INTEGER, 1, 7, MPI_COMM_WORLD)
  if (rank == 1) call MPI_Recv(buf, three, MPI_INTEGER, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE)
  call MPI_Allreduce(MPI_IN_PLACE, buf, four, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD)
  if (rank == 0) print '(a, i0)', 'mpi_large_count: ', sum(buf)
  call MPI_Finalize()
end program mpi_large_count
