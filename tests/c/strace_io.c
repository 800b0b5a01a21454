/* Single-threaded, deterministic: moves known byte counts through every
 * I/O family tau_strace sizes, plus a few non-I/O calls and a failing one.
 * Totals: write 10000, read 3584, pwrite64 300, pread64 200, writev 900,
 * readv 900, sendto 256, recvfrom 256, sendmsg 40, recvmsg 40,
 * sendfile 1000, splice 100, copy_file_range 500, sendmmsg 60 and
 * recvmmsg 60 (three messages each), process_vm_readv 123 and
 * process_vm_writev 77 (on itself). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static char buf[4096];

static void check(int ok, const char *what) {
    if (!ok) {
        perror(what);
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/a", argv[1]);
    snprintf(b, sizeof b, "%s/b", argv[1]);
    int null = open("/dev/null", O_WRONLY);
    int zero = open("/dev/zero", O_RDONLY);
    check(null >= 0 && zero >= 0, "open");
    for (int i = 0; i < 10; i++) check(write(null, buf, 1000) == 1000, "write");
    for (int i = 0; i < 7; i++) check(read(zero, buf, 512) == 512, "read");
    int f = open(a, O_RDWR | O_CREAT | O_TRUNC, 0600);
    check(f >= 0, "open a");
    check(pwrite(f, buf, 300, 0) == 300, "pwrite");
    check(pread(f, buf, 200, 50) == 200, "pread");
    struct iovec iov[2] = {{buf, 100}, {buf + 100, 200}};
    for (int i = 0; i < 3; i++) check(writev(null, iov, 2) == 300, "writev");
    for (int i = 0; i < 3; i++) check(readv(zero, iov, 2) == 300, "readv");
    int sv[2];
    check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    for (int i = 0; i < 4; i++) {
        check(sendto(sv[0], buf, 64, 0, NULL, 0) == 64, "sendto");
        check(recvfrom(sv[1], buf, 64, 0, NULL, NULL) == 64, "recvfrom");
    }
    struct iovec one = {buf, 40};
    struct msghdr m = {0};
    m.msg_iov = &one;
    m.msg_iovlen = 1;
    check(sendmsg(sv[0], &m, 0) == 40, "sendmsg");
    check(recvmsg(sv[1], &m, 0) == 40, "recvmsg");
    struct mmsghdr mm[3] = {{{0}}};
    struct iovec parts[3] = {{buf, 10}, {buf + 10, 20}, {buf + 30, 30}};
    for (int i = 0; i < 3; i++) {
        mm[i].msg_hdr.msg_iov = &parts[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    int dg[2];
    check(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) == 0, "socketpair dgram");
    check(sendmmsg(dg[0], mm, 3, 0) == 3, "sendmmsg");
    check(recvmmsg(dg[1], mm, 3, 0, NULL) == 3, "recvmmsg");
    static char there[200];
    struct iovec here_v = {buf, 123}, there_v = {there, 123};
    check(process_vm_readv(getpid(), &here_v, 1, &there_v, 1, 0) == 123, "process_vm_readv");
    here_v.iov_len = there_v.iov_len = 77;
    check(process_vm_writev(getpid(), &here_v, 1, &there_v, 1, 0) == 77, "process_vm_writev");
    int g = open(b, O_RDWR | O_CREAT | O_TRUNC, 0600);
    check(g >= 0, "open b");
    check(ftruncate(f, 1000) == 0, "ftruncate");
    off_t off = 0;
    check(sendfile(g, f, &off, 1000) == 1000, "sendfile");
    int p[2];
    check(pipe(p) == 0, "pipe");
    check(write(p[1], buf, 100) == 100, "write pipe");
    check(splice(p[0], NULL, null, NULL, 100, 0) == 100, "splice");
    loff_t in = 0, out = 0;
    check(copy_file_range(f, &in, g, &out, 500, 0) == 500, "copy_file_range");
    struct stat st;
    check(stat(a, &st) == 0, "stat");
    /* A failing call: counted as a call, moves no bytes. */
    check(read(-1, buf, 10) == -1, "read(-1)");
    for (int i = 0; i < 25; i++) getppid();
    /* Numbers no kernel assigns (ENOSYS): named syscall_N. */
    for (int i = 0; i < 3; i++) syscall(1000);
    syscall(2000);
    unlink(a);
    unlink(b);
    return 0;
}
