/* Calls every syscall number from 1000 to 1400 once: none exists, each
 * fails with ENOSYS. More distinct numbers outside the tables than the eBPF
 * engine's map holds. Prints how many failed so, exits 3. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void)
{
	int enosys = 0;
	for (long nr = 1000; nr <= 1400; nr++)
		if (syscall(nr) == -1 && errno == ENOSYS)
			enosys++;
	printf("%d numbers failed with ENOSYS\n", enosys);
	return 3;
}
