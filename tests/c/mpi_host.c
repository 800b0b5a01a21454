/* An interpreter stand-in: not linked to MPI, it loads the module given as
 * argument with RTLD_LOCAL (as Python does) and runs plugin_main. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    int (*run)(void) = (int (*)(void))dlsym(h, "plugin_main");
    return run ? run() : 2;
}
