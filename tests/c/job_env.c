/* Prints, for each rank, what the proxy should file it under: its pid, its
 * rank, and its job as the launcher names it: Open MPI's PMIX_NAMESPACE, or
 * under MPICH's Hydra "hydra-PID-START" of its grandparent (rank <-
 * tau_metric_proxy_run <- hydra_pmi_proxy), read from /proc. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Field 4 (parent pid) and field 22 (start time) of /proc/PID/stat. */
static int stat_of(int pid, int *ppid, unsigned long long *start) {
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')');
    if (!p)
        return -1;
    char state;
    return sscanf(p + 2, "%c %d %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu", &state,
                  ppid, start) == 3
               ? 0
               : -1;
}

int main(int argc, char **argv) {
    int rank, parent, grandparent, up;
    unsigned long long start;
    char job[256];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *ns = getenv("PMIX_NAMESPACE");
    if (ns) {
        snprintf(job, sizeof job, "%s", ns);
    } else if (stat_of(getpid(), &parent, &start) == 0 && stat_of(parent, &grandparent, &start) == 0 &&
               stat_of(grandparent, &up, &start) == 0) {
        snprintf(job, sizeof job, "hydra-%d-%llu", grandparent, start);
    } else {
        snprintf(job, sizeof job, "unknown");
    }
    printf("%d %d %s\n", (int)getpid(), rank, job);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
