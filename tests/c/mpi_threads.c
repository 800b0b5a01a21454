/* MPI_THREAD_MULTIPLE: two waves of 4 threads (the second reuses the first's
 * counter slabs) each call MPI_Comm_rank 10000 times and exchange 1000
 * 8-byte messages with their own rank. Expected counts: tests/tests/it/mpi.rs. */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>

#define THREADS 4

static void *work(void *arg) {
    int tag = (int)(long)arg, rank;
    double out = tag, in = 0;
    for (int i = 0; i < 10000; i++)
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (int i = 0; i < 1000; i++)
        MPI_Sendrecv(&out, 1, MPI_DOUBLE, rank, tag, &in, 1, MPI_DOUBLE, rank, tag, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
    return NULL;
}

int main(int argc, char **argv) {
    int provided, rank;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    if (provided != MPI_THREAD_MULTIPLE) {
        fprintf(stderr, "MPI_THREAD_MULTIPLE not provided\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (int wave = 0; wave < 2; wave++) {
        pthread_t t[THREADS];
        for (long i = 0; i < THREADS; i++)
            pthread_create(&t[i], NULL, work, (void *)(wave * THREADS + i));
        for (int i = 0; i < THREADS; i++)
            pthread_join(t[i], NULL);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0)
        printf("mpi_threads: done\n");
    MPI_Finalize();
    return 0;
}
