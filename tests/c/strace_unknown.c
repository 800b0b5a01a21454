/* Calls every syscall number from 1000 to 2099 once: none exists, each
 * fails with ENOSYS. More distinct numbers outside the tables than either
 * engine has room for (the eBPF engine's map, the ptrace engine's 1024
 * names). Prints how many failed so, exits 3. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void)
{
	int enosys = 0;
	for (long nr = 1000; nr <= 2099; nr++)
		if (syscall(nr) == -1 && errno == ENOSYS)
			enosys++;
	printf("%d numbers failed with ENOSYS\n", enosys);
	return 3;
}
