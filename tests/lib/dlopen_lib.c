/* dlopen_lib — a library that early_init's "dlopen" subtest loads and
 * unloads repeatedly: its constructor and destructor allocate and free, it
 * hands blocks across the library boundary, and it has a large thread-local
 * buffer, which ld.so allocates with malloc per thread on first use because
 * the library is loaded with dlopen. Built by tests/test_init.py. */
#include <stdlib.h>
#include <string.h>

#define TABLE 64

static char *table[TABLE];

static size_t entry_size(int i)
{
    return (size_t)i * 1000 + 1;
}

__attribute__((constructor)) static void dlopen_lib_init(void)
{
    for (int i = 0; i < TABLE; i++) {
        table[i] = malloc(entry_size(i));
        if (table[i])
            memset(table[i], 'a' + i % 26, entry_size(i));
    }
}

__attribute__((destructor)) static void dlopen_lib_fini(void)
{
    for (int i = 0; i < TABLE; i++) {
        free(table[i]);
        table[i] = NULL;
    }
}

/* 0 when the constructor's blocks are all there and intact. */
int dlopen_lib_selftest(void)
{
    for (int i = 0; i < TABLE; i++) {
        if (!table[i])
            return -1;
        for (size_t k = 0; k < entry_size(i); k++)
            if (table[i][k] != 'a' + i % 26)
                return -1;
    }
    return 0;
}

char *dlopen_lib_make(size_t n)
{
    char *s = malloc(n);
    if (s) {
        memset(s, 'x', n - 1);
        s[n - 1] = 0;
    }
    return s;
}

void dlopen_lib_free(void *p)
{
    free(p);
}

static __thread char tls_buffer[8192];

size_t dlopen_lib_touch_tls(void)
{
    memset(tls_buffer, 1, sizeof tls_buffer);
    size_t sum = 0;
    for (size_t i = 0; i < sizeof tls_buffer; i++)
        sum += (size_t)tls_buffer[i];
    return sum;
}
