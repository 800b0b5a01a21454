/* 32-bit syscalls from a 64-bit process (int $0x80): getpid 4 times and a
 * 32-bit write of 12 bytes to stdout, named from the i386 table. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static long sys32(long nr, long a, long b, long c) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return r;
}

int main(void) {
    /* The 32-bit ABI only passes 32-bit pointers. */
    char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) return 2;
    memcpy(low, "hello int80\n", 12);
    for (int i = 0; i < 4; i++) sys32(20, 0, 0, 0);
    return sys32(4, 1, (long)low, 12) == 12 ? 0 : 3;
}
