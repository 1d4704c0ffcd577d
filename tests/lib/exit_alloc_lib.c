/* exit_alloc_lib — preloaded next to libhakmem, before or after it in
 * LD_PRELOAD, so that in one of the two orders its destructor runs after
 * libhakmem's: allocating and freeing there must still work. Reports on
 * stderr with write(2): stdio may already be shut down by then. Built by
 * tests/test_init.py. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *kept;

static void say(const char *msg)
{
    ssize_t r = write(2, msg, strlen(msg));
    (void)r;
}

__attribute__((constructor)) static void exit_alloc_lib_init(void)
{
    kept = malloc(1000);
    if (kept)
        memset(kept, 'k', 1000);
    say(kept ? "exit_alloc_lib: constructor ok\n" : "exit_alloc_lib: constructor FAILED\n");
}

__attribute__((destructor)) static void exit_alloc_lib_fini(void)
{
    int ok = kept != NULL && kept[999] == 'k';
    for (size_t n = 1; n <= (size_t)4 << 20; n *= 4) {
        char *p = malloc(n);
        ok &= p != NULL;
        if (p)
            memset(p, 1, n);
        free(p);
    }
    free(kept);
    kept = NULL;
    say(ok ? "exit_alloc_lib: destructor ok\n" : "exit_alloc_lib: destructor FAILED\n");
}
