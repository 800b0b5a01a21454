/* Calls every family the PMPI shim sizes, with known counts, on 4 ranks.
 *
 * Usage: mpi_families DIR [fork] [wait=FILE] [exit=N]
 *   DIR      where the MPI-IO test file is written
 *   fork     rank 0 forks a child that calls MPI_Comm_rank 5 times and exits
 *   wait=F   after the communication, rank 0 waits until file F exists
 *   exit=N   rank 0 exits with status N after MPI_Finalize
 * The expected per-function calls and bytes are in tests/tests/it/mpi.rs;
 * any change here must be mirrored there. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int rank, size, left, right;

static void fail(const char *what) {
    fprintf(stderr, "rank %d: %s\n", rank, what);
    MPI_Abort(MPI_COMM_WORLD, 99);
}

static void point_to_point(void) {
    int ibuf[16] = {0};
    double dbuf[8] = {0}, dbuf2[8] = {0};
    char cbuf[8] = {0};
    MPI_Request req[2];

    /* Blocking ring: 10 ints. */
    if (rank % 2 == 0) {
        MPI_Send(ibuf, 10, MPI_INT, right, 1, MPI_COMM_WORLD);
        MPI_Recv(ibuf, 10, MPI_INT, left, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(ibuf, 10, MPI_INT, left, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(ibuf, 10, MPI_INT, right, 1, MPI_COMM_WORLD);
    }
    /* Nonblocking ring: 5 doubles. */
    MPI_Irecv(dbuf, 5, MPI_DOUBLE, left, 2, MPI_COMM_WORLD, &req[0]);
    MPI_Isend(dbuf2, 5, MPI_DOUBLE, right, 2, MPI_COMM_WORLD, &req[1]);
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    /* Synchronous, pairs (0,1) (2,3): 7 chars. */
    if (rank % 2 == 0)
        MPI_Ssend(cbuf, 7, MPI_CHAR, rank + 1, 3, MPI_COMM_WORLD);
    else
        MPI_Recv(cbuf, 7, MPI_CHAR, rank - 1, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    /* Ready: the receive is posted before the barrier. 3 ints. */
    if (rank % 2 == 1)
        MPI_Irecv(ibuf, 3, MPI_INT, rank - 1, 4, MPI_COMM_WORLD, &req[0]);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank % 2 == 0)
        MPI_Rsend(ibuf, 3, MPI_INT, rank + 1, 4, MPI_COMM_WORLD);
    else
        MPI_Wait(&req[0], MPI_STATUS_IGNORE);
    /* Buffered: 4 ints. */
    static char bsend_buf[1024 + MPI_BSEND_OVERHEAD];
    MPI_Buffer_attach(bsend_buf, sizeof bsend_buf);
    if (rank % 2 == 0)
        MPI_Bsend(ibuf, 4, MPI_INT, rank + 1, 5, MPI_COMM_WORLD);
    else
        MPI_Recv(ibuf, 4, MPI_INT, rank - 1, 5, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    void *addr;
    int bsize;
    MPI_Buffer_detach(&addr, &bsize);
    /* Persistent: created once (2 ints each way), started 3 times. */
    int psend[2] = {0}, precv[2];
    MPI_Send_init(psend, 2, MPI_INT, right, 6, MPI_COMM_WORLD, &req[1]);
    MPI_Recv_init(precv, 2, MPI_INT, left, 6, MPI_COMM_WORLD, &req[0]);
    for (int i = 0; i < 3; i++) {
        MPI_Start(&req[0]);
        MPI_Start(&req[1]);
        MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    }
    MPI_Request_free(&req[0]);
    MPI_Request_free(&req[1]);
    /* Send-receive: 4 ints each way; replace: 6 doubles. */
    MPI_Sendrecv(ibuf, 4, MPI_INT, right, 7, ibuf + 4, 4, MPI_INT, left, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Sendrecv_replace(dbuf, 6, MPI_DOUBLE, right, 8, left, 8, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    /* The null process: calls without data. */
    MPI_Send(ibuf, 100, MPI_INT, MPI_PROC_NULL, 9, MPI_COMM_WORLD);
    MPI_Recv(ibuf, 100, MPI_INT, MPI_PROC_NULL, 9, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
#if MPI_VERSION >= 4
    /* Large-count variants (MPICH): 3 ints around the ring, 2 doubles reduced. */
    if (rank % 2 == 0) {
        MPI_Send_c(ibuf, 3, MPI_INT, right, 10, MPI_COMM_WORLD);
        MPI_Recv_c(ibuf, 3, MPI_INT, left, 10, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv_c(ibuf, 3, MPI_INT, left, 10, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send_c(ibuf, 3, MPI_INT, right, 10, MPI_COMM_WORLD);
    }
    MPI_Allreduce_c(dbuf, dbuf2, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#endif
}

static void collectives(void) {
    int a[64] = {0}, b[64] = {0};
    double d[64] = {0}, e[64] = {0};
    char c[64] = {0};
    MPI_Comm w = MPI_COMM_WORLD;
    int counts4[4] = {1, 2, 3, 4}, displs4[4] = {0, 1, 3, 6};

    MPI_Bcast(a, 8, MPI_INT, 0, w);
    MPI_Reduce(d, e, 3, MPI_DOUBLE, MPI_SUM, 1, w);
    MPI_Reduce(rank == 2 ? MPI_IN_PLACE : a, b, 2, MPI_INT, MPI_SUM, 2, w);
    MPI_Allreduce(a, b, 2, MPI_INT, MPI_SUM, w);
    MPI_Allreduce(MPI_IN_PLACE, b, 2, MPI_INT, MPI_SUM, w);
    MPI_Gather(a, 2, MPI_INT, b, 2, MPI_INT, 0, w);
    /* Rank r contributes r+1 ints; the root's own block is in place. */
    MPI_Gatherv(rank == 0 ? MPI_IN_PLACE : a, rank + 1, MPI_INT, b, counts4, displs4, MPI_INT, 0, w);
    MPI_Scatter(d, 3, MPI_DOUBLE, e, 3, MPI_DOUBLE, 2, w);
    int sc[4] = {1, 1, 2, 2}, sd[4] = {0, 1, 2, 4};
    MPI_Scatterv(c, sc, sd, MPI_CHAR, rank == 3 ? MPI_IN_PLACE : c + 8, sc[rank], MPI_CHAR, 3, w);
    MPI_Allgather(a, 1, MPI_INT, b, 1, MPI_INT, w);
    int agc[4] = {1, 2, 1, 2}, agd[4] = {0, 1, 3, 4};
    MPI_Allgatherv(a, agc[rank], MPI_INT, b, agc, agd, MPI_INT, w);
    MPI_Alltoall(a, 2, MPI_INT, b, 2, MPI_INT, w);
    MPI_Alltoall(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b, 1, MPI_INT, w);
    int ones[4] = {1, 1, 1, 1}, offs[4] = {0, 1, 2, 3};
    MPI_Alltoallv(a, ones, offs, MPI_INT, b, ones, offs, MPI_INT, w);
    /* Alltoallw: one 12-byte derived type out, three ints in, per peer. */
    MPI_Datatype tri;
    MPI_Type_contiguous(3, MPI_INT, &tri);
    MPI_Type_commit(&tri);
    int threes[4] = {3, 3, 3, 3}, wdispl[4] = {0, 12, 24, 36};
    MPI_Datatype stypes[4] = {tri, tri, tri, tri}, rtypes[4] = {MPI_INT, MPI_INT, MPI_INT, MPI_INT};
    MPI_Alltoallw(a, ones, wdispl, stypes, b, threes, wdispl, rtypes, w);
    MPI_Type_free(&tri);
    MPI_Reduce_scatter_block(a, b, 2, MPI_INT, MPI_SUM, w);
    MPI_Reduce_scatter(a, b, counts4, MPI_INT, MPI_SUM, w);
    MPI_Scan(d, e, 1, MPI_DOUBLE, MPI_SUM, w);
    MPI_Exscan(a, b, 1, MPI_INT, MPI_SUM, w);
    MPI_Request r;
    MPI_Iallreduce(a, b, 4, MPI_INT, MPI_SUM, w, &r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);
    MPI_Ibcast(c, 3, MPI_CHAR, 0, w, &r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);
}

static void neighbourhood(void) {
    int a[16] = {0}, b[16] = {0};
    double d[4] = {0}, e[4] = {0};
    MPI_Comm ring, graph;
    int dims[1] = {size}, periods[1] = {1};
    MPI_Cart_create(MPI_COMM_WORLD, 1, dims, periods, 0, &ring);
    MPI_Neighbor_allgather(a, 1, MPI_INT, b, 1, MPI_INT, ring);
    MPI_Neighbor_alltoall(a, 2, MPI_INT, b, 2, MPI_INT, ring);
    int ones[2] = {1, 1}, od[2] = {0, 1};
    MPI_Neighbor_allgatherv(a, 1, MPI_INT, b, ones, od, MPI_INT, ring);
    /* One int to the left neighbour, two to the right; received mirrored. */
    int sc[2] = {1, 2}, sdp[2] = {0, 1}, rc[2] = {2, 1}, rdp[2] = {0, 2};
    MPI_Neighbor_alltoallv(a, sc, sdp, MPI_INT, b, rc, rdp, MPI_INT, ring);
    MPI_Comm_free(&ring);
    /* A directed ring as a distributed graph: one in, one out. */
    int src[1] = {left}, dst[1] = {right};
    MPI_Dist_graph_create_adjacent(MPI_COMM_WORLD, 1, src, MPI_UNWEIGHTED, 1, dst, MPI_UNWEIGHTED, MPI_INFO_NULL, 0,
                                   &graph);
    MPI_Neighbor_alltoall(d, 1, MPI_DOUBLE, e, 1, MPI_DOUBLE, graph);
    MPI_Comm_free(&graph);
}

static void one_sided(void) {
    int mem[16] = {0}, o[4] = {1, 2, 3, 4}, res[4];
    MPI_Win win;
    MPI_Win_create(mem, sizeof mem, sizeof(int), MPI_INFO_NULL, MPI_COMM_WORLD, &win);
    MPI_Win_fence(0, win);
    MPI_Put(o, 2, MPI_INT, right, 0, 2, MPI_INT, win);
    MPI_Get(res, 3, MPI_INT, left, 2, 3, MPI_INT, win);
    MPI_Accumulate(o, 1, MPI_INT, right, 5, 1, MPI_INT, MPI_SUM, win);
    MPI_Get_accumulate(o, 1, MPI_INT, res + 3, 1, MPI_INT, right, 6, 1, MPI_INT, MPI_SUM, win);
    MPI_Win_fence(0, win);
    MPI_Fetch_and_op(o, res, MPI_INT, right, 7, MPI_SUM, win);
    MPI_Win_fence(0, win);
    MPI_Compare_and_swap(o, o + 1, res, MPI_INT, right, 8, win);
    MPI_Put(o, 4, MPI_INT, MPI_PROC_NULL, 0, 4, MPI_INT, win);
    MPI_Win_fence(0, win);
    MPI_Request r;
    MPI_Win_lock_all(0, win);
    MPI_Rput(o, 1, MPI_INT, right, 10, 1, MPI_INT, win, &r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);
    MPI_Win_unlock_all(win);
    MPI_Win_free(&win);
}

static void file_io(const char *dir) {
    char path[4096], text[16] = "0123456789abcdef";
    int ints[2] = {rank, rank};
    double ds[2] = {rank, rank};
    snprintf(path, sizeof path, "%s/mpi_io.dat", dir);
    MPI_File f;
    if (MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_CREATE | MPI_MODE_RDWR, MPI_INFO_NULL, &f) != MPI_SUCCESS)
        fail("MPI_File_open failed");
    MPI_File_write_at(f, rank * 16, text, 16, MPI_CHAR, MPI_STATUS_IGNORE);
    MPI_File_read_at(f, rank * 16, text, 16, MPI_CHAR, MPI_STATUS_IGNORE);
    MPI_File_write_at_all(f, 256 + rank * 8, ints, 2, MPI_INT, MPI_STATUS_IGNORE);
    MPI_Request r;
    MPI_File_iwrite_at(f, 512 + rank * 16, ds, 2, MPI_DOUBLE, &r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);
    MPI_File_close(&f);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    const char *wait_file = NULL;
    int do_fork = 0, status = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "fork") == 0)
            do_fork = 1;
        else if (strncmp(argv[i], "wait=", 5) == 0)
            wait_file = argv[i] + 5;
        else if (strncmp(argv[i], "exit=", 5) == 0)
            status = atoi(argv[i] + 5);
    }
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 4)
        fail("needs exactly 4 ranks");
    left = (rank + size - 1) % size;
    right = (rank + 1) % size;

    point_to_point();
    collectives();
    neighbourhood();
    one_sided();
    file_io(dir);

    if (do_fork && rank == 0) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            int r;
            for (int i = 0; i < 5; i++)
                MPI_Comm_rank(MPI_COMM_WORLD, &r);
            exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail("forked child failed");
    }
    if (wait_file && rank == 0)
        while (access(wait_file, F_OK) != 0)
            usleep(10000);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0)
        printf("mpi_families: 4 ranks done\n");
    MPI_Finalize();
    return rank == 0 ? status : 0;
}
