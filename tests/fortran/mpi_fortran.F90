! The same MPI calls through each Fortran binding: `include 'mpif.h'` by
! default, `use mpi` with -DUSE_MPI, `use mpi_f08` with -DUSE_F08. The
! integration tests know every call it makes and every byte it moves on
! 4 ranks (tests/tests/it/mpi_fortran.rs). Argument: a directory for the
! MPI-IO file. Rank 0 prints a checksum of what was received.
program mpi_fortran
#if defined(USE_F08)
  use mpi_f08
#elif defined(USE_MPI)
  use mpi
#endif
  implicit none
#if !defined(USE_F08) && !defined(USE_MPI)
  include 'mpif.h'
#endif
#if defined(USE_F08)
  type(MPI_Status) :: st, sts(2)
  type(MPI_Comm) :: half, dup
  type(MPI_Request) :: reqs(2)
  type(MPI_Win) :: win
  type(MPI_File) :: fh
#else
  integer :: st(MPI_STATUS_SIZE), sts(MPI_STATUS_SIZE, 2)
  integer :: half, dup, reqs(2), win, fh
#endif
  integer :: ierr, rank, nprocs, right, left, i, check
  integer :: ibuf(8), rbuf(8), wbuf(8), counts(4), displs(4), gath(10), all(8), one, ones
  double precision :: d(4), dsum(4)
  integer(kind=MPI_ADDRESS_KIND) :: winsize, disp
  integer(kind=MPI_OFFSET_KIND) :: off
  character(len=200) :: dir

  call get_command_argument(1, dir)
  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nprocs, ierr)
  right = mod(rank + 1, nprocs)
  left = mod(rank + nprocs - 1, nprocs)
  do i = 1, 8
    ibuf(i) = 100 * rank + i
  end do
  rbuf = 0
  d = [1d0, 2d0, 3d0, 4d0] * (rank + 1)

  ! Point to point: a ring, blocking (20 bytes each way).
  if (mod(rank, 2) == 0) then
    call MPI_Send(ibuf, 5, MPI_INTEGER, right, 1, MPI_COMM_WORLD, ierr)
    call MPI_Recv(rbuf, 5, MPI_INTEGER, left, 1, MPI_COMM_WORLD, st, ierr)
  else
    call MPI_Recv(rbuf, 5, MPI_INTEGER, left, 1, MPI_COMM_WORLD, st, ierr)
    call MPI_Send(ibuf, 5, MPI_INTEGER, right, 1, MPI_COMM_WORLD, ierr)
  end if
  check = sum(rbuf)
  ! Nonblocking: 3 integers with MPI_Waitall, 2 doubles with MPI_Wait.
  call MPI_Irecv(rbuf, 3, MPI_INTEGER, left, 2, MPI_COMM_WORLD, reqs(1), ierr)
  call MPI_Isend(ibuf, 3, MPI_INTEGER, right, 2, MPI_COMM_WORLD, reqs(2), ierr)
  call MPI_Waitall(2, reqs, sts, ierr)
  call MPI_Irecv(dsum, 2, MPI_DOUBLE_PRECISION, left, 3, MPI_COMM_WORLD, reqs(1), ierr)
  call MPI_Isend(d, 2, MPI_DOUBLE_PRECISION, right, 3, MPI_COMM_WORLD, reqs(2), ierr)
  call MPI_Wait(reqs(1), st, ierr)
  call MPI_Wait(reqs(2), MPI_STATUS_IGNORE, ierr)
  check = check + sum(rbuf(1:3)) + int(dsum(1) + dsum(2))
  call MPI_Sendrecv(ibuf, 4, MPI_INTEGER, right, 4, rbuf, 4, MPI_INTEGER, left, 4, MPI_COMM_WORLD, st, ierr)
  check = check + sum(rbuf(1:4))

  ! Collectives, one in place and one `v` variant.
  call MPI_Bcast(d, 4, MPI_DOUBLE_PRECISION, 0, MPI_COMM_WORLD, ierr)
  call MPI_Allreduce(d, dsum, 4, MPI_DOUBLE_PRECISION, MPI_SUM, MPI_COMM_WORLD, ierr)
  call MPI_Allreduce(MPI_IN_PLACE, dsum, 4, MPI_DOUBLE_PRECISION, MPI_SUM, MPI_COMM_WORLD, ierr)
  check = check + int(sum(dsum))
  call MPI_Reduce(d, dsum, 2, MPI_DOUBLE_PRECISION, MPI_SUM, 0, MPI_COMM_WORLD, ierr)
  counts = [1, 2, 3, 4]
  displs = [0, 1, 3, 6]
  gath = 0
  call MPI_Gatherv(ibuf, rank + 1, MPI_INTEGER, gath, counts, displs, MPI_INTEGER, 0, MPI_COMM_WORLD, ierr)
  all = 0
  all(2 * rank + 1) = rank + 1
  all(2 * rank + 2) = rank + 2
  call MPI_Allgather(MPI_IN_PLACE, 0, MPI_INTEGER, all, 2, MPI_INTEGER, MPI_COMM_WORLD, ierr)
  check = check + sum(all)
  if (rank == 0) check = check + sum(gath) + int(dsum(1) + dsum(2))
  call MPI_Barrier(MPI_COMM_WORLD, ierr)

  ! Communicators: split in halves, duplicate, reduce there, free.
  call MPI_Comm_split(MPI_COMM_WORLD, mod(rank, 2), rank, half, ierr)
  call MPI_Comm_dup(half, dup, ierr)
  one = 1
  call MPI_Allreduce(one, ones, 1, MPI_INTEGER, MPI_SUM, dup, ierr)
  check = check + ones
  call MPI_Comm_free(dup, ierr)
  call MPI_Comm_free(half, ierr)

  ! One-sided: a put to the right and a get from the left between fences.
  wbuf = ibuf
  winsize = 8 * 4
  call MPI_Win_create(wbuf, winsize, 4, MPI_INFO_NULL, MPI_COMM_WORLD, win, ierr)
  call MPI_Win_fence(0, win, ierr)
  disp = 0
  call MPI_Put(ibuf(7), 2, MPI_INTEGER, right, disp, 2, MPI_INTEGER, win, ierr)
  call MPI_Win_fence(0, win, ierr)
  disp = 4
  call MPI_Get(rbuf, 3, MPI_INTEGER, left, disp, 3, MPI_INTEGER, win, ierr)
  call MPI_Win_fence(0, win, ierr)
  call MPI_Win_free(win, ierr)
  check = check + sum(wbuf) + sum(rbuf(1:3))

  ! MPI-IO: each rank writes 4 integers at its own offset and reads them back.
  call MPI_File_open(MPI_COMM_WORLD, trim(dir) // '/mpi_fortran.dat', MPI_MODE_CREATE + MPI_MODE_RDWR, &
                     MPI_INFO_NULL, fh, ierr)
  off = rank * 16
  call MPI_File_write_at(fh, off, ibuf, 4, MPI_INTEGER, st, ierr)
  rbuf = 0
  call MPI_File_read_at(fh, off, rbuf, 4, MPI_INTEGER, st, ierr)
  call MPI_File_close(fh, ierr)
  check = check + sum(rbuf(1:4))

  call MPI_Barrier(MPI_COMM_WORLD, ierr)
  if (rank == 0) print '(a, i0, a, i0)', 'mpi_fortran: ', nprocs, ' ranks, checksum ', check
  call MPI_Finalize(ierr)
end program mpi_fortran
