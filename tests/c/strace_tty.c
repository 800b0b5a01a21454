/* Run on a terminal: whether stdin and stdout are the terminal and whether
 * the program is in its foreground process group (so it may read it and
 * gets its Ctrl+C); exits 4. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    int in = isatty(0), out = isatty(1);
    int fg = tcgetpgrp(0) == getpgrp();
    printf("stdin tty=%d stdout tty=%d foreground=%d\n", in, out, fg);
    return 4;
}
