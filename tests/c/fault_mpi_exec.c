/* Exec in an MPI program, for the fault tests: each rank makes CALLS
 * MPI_Comm_rank, then forks ROUNDS children; child i makes CALLS
 * MPI_Initialized (valid in any process) and replaces itself with
 * /bin/true through exec function i % 8 (execv, execvp, execve, execvpe,
 * execl, execlp, execle, fexecve). After MPI_Finalize the rank makes CALLS
 * MPI_Finalized, an exec that fails (it goes on with errno ENOENT), CALLS
 * MPI_Finalized again, and replaces itself with `echo fault_mpi_exec: done`.
 * Usage: fault_mpi_exec ROUNDS CALLS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void replace(int how) {
    char *argv[] = {"true", NULL};
    int fd;
    switch (how % 8) {
    case 0: execv("/bin/true", argv); break;
    case 1: execvp("true", argv); break;
    case 2: execve("/bin/true", argv, environ); break;
    case 3: execvpe("true", argv, environ); break;
    case 4: execl("/bin/true", "true", (char *)NULL); break;
    case 5: execlp("true", "true", (char *)NULL); break;
    case 6: execle("/bin/true", "true", (char *)NULL, environ); break;
    case 7:
        fd = open("/bin/true", O_RDONLY);
        if (fd >= 0)
            fexecve(fd, argv, environ);
        break;
    }
    _exit(127);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fault_mpi_exec ROUNDS CALLS\n");
        return 2;
    }
    int rounds = atoi(argv[1]), calls = atoi(argv[2]), rank, flag;
    MPI_Init(&argc, &argv);
    for (int c = 0; c < calls; c++)
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (int i = 0; i < rounds; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int c = 0; c < calls; c++)
                MPI_Initialized(&flag);
            replace(i);
        }
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fault_mpi_exec: rank %d: child %d failed\n", rank, i);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    MPI_Finalize();
    for (int c = 0; c < calls; c++)
        MPI_Finalized(&flag);
    char *missing[] = {"missing", NULL};
    if (execv("/nonexistent/missing", missing) != -1 || errno != ENOENT) {
        perror("fault_mpi_exec: execv of a missing program");
        return 1;
    }
    for (int c = 0; c < calls; c++)
        MPI_Finalized(&flag);
    execlp("echo", "echo", "fault_mpi_exec: done", (char *)NULL);
    return 127;
}
