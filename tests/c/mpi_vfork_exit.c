/* A program that makes MPI calls and lets a vfork child call exit()
 * instead of _exit(), which is wrong but happens: the child runs the
 * parent's exit hooks in the parent's memory (and, with glibc, uses them
 * up: the parent's own exit runs none). It makes CALLS MPI_Initialized
 * (valid without MPI_Init, so no launcher is needed), vforks a child that
 * calls exit(0), makes CALLS more, then replaces itself with
 * `echo mpi_vfork_exit: done`, whose exec hook pushes the parent's counts.
 * Usage: mpi_vfork_exit CALLS */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mpi_vfork_exit CALLS\n");
        return 2;
    }
    int calls = atoi(argv[1]), flag, status;
    for (int c = 0; c < calls; c++)
        MPI_Initialized(&flag);
    fflush(stdout);
    pid_t pid = vfork();
    if (pid == 0)
        exit(0);
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "mpi_vfork_exit: the vfork child failed\n");
        return 1;
    }
    for (int c = 0; c < calls; c++)
        MPI_Initialized(&flag);
    execlp("echo", "echo", "mpi_vfork_exit: done", (char *)NULL);
    perror("mpi_vfork_exit: echo");
    return 127;
}
