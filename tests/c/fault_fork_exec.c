/* Forks ROUNDS children; child i calls getppid CALLS times, then replaces
 * itself with /bin/true through exec function i % 8 (execv, execvp, execve,
 * execvpe, execl, execlp, execle, fexecve). The parent checks every child
 * exits with status 0, then exits with status 6.
 * Usage: fault_fork_exec ROUNDS CALLS */
#define _GNU_SOURCE
#include <fcntl.h>
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
        fprintf(stderr, "usage: fault_fork_exec ROUNDS CALLS\n");
        return 2;
    }
    int rounds = atoi(argv[1]), calls = atoi(argv[2]);
    for (int i = 0; i < rounds; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int c = 0; c < calls; c++)
                getppid();
            replace(i);
        }
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fault_fork_exec: child %d failed\n", i);
            return 1;
        }
    }
    return 6;
}
