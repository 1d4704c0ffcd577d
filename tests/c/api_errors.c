/* api_errors — failures: every impossible or overflowing request returns
 * NULL with errno ENOMEM (posix_memalign returns the code), a failed realloc
 * leaves the old block alone, bad alignments are EINVAL, and running out of
 * address space (RLIMIT_AS) gives NULL/ENOMEM, never a crash. */
#include "check.h"

#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* volatile: the compiler must not see the sizes and fold or warn. */
static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_ptrdiff_max = PTRDIFF_MAX;

static size_t huge_sizes(size_t *out)
{
    size_t n = 0;
    out[n++] = v_size_max;
    out[n++] = v_size_max - 1;
    out[n++] = v_size_max - 15;
    out[n++] = v_size_max - 16;
    out[n++] = v_size_max - 4095;
    out[n++] = v_size_max - 4096;
    out[n++] = v_size_max - (1 << 20);
    out[n++] = v_size_max - ((size_t)1 << 32);
    out[n++] = v_ptrdiff_max + 1;
    out[n++] = v_ptrdiff_max;
    out[n++] = (size_t)1 << 62;
    return n;
}

static void t_malloc_huge(void)
{
    size_t sizes[16];
    size_t n = huge_sizes(sizes);
    for (size_t i = 0; i < n; i++) {
        errno = 0;
        void *p = malloc(sizes[i]);
        int e = errno;
        CHECK(p == NULL && e == ENOMEM, "malloc(%#zx) returned %p errno %d (%s), expected NULL ENOMEM", sizes[i], p, e,
              strerror(e));
        free(p);
    }
    void *p = malloc(100); /* and the allocator still works */
    REQUIRE(p, "malloc(100) failed after the huge requests");
    CHECK_OWNS(p);
    free(p);
}

static void t_calloc_overflow(void)
{
    const size_t half = v_size_max / 2 + 1;
    CHECK_ENOMEM(calloc(half, 3));
    CHECK_ENOMEM(calloc(3, half));
    CHECK_ENOMEM(calloc(v_size_max, v_size_max));
    CHECK_ENOMEM(calloc((size_t)1 << 32, (size_t)1 << 32));
    CHECK_ENOMEM(calloc(v_ptrdiff_max / 2 + 1, 2));
    CHECK_ENOMEM(calloc(v_size_max, 1)); /* no overflow, just too big */
    CHECK_ENOMEM(calloc(1, v_size_max));
}

/* Called through a pointer: GCC 12 assumes reallocarray always frees its
 * argument and rejects (-Werror=use-after-free) looking at the old block
 * after a failure, which is exactly what is tested here. */
static void *(*volatile call_reallocarray)(void *, size_t, size_t) = reallocarray;

static void t_reallocarray_overflow(void)
{
    unsigned char *p = malloc(64);
    REQUIRE(p, "malloc(64) failed");
    fill_pattern(p, 64, 3);
    const size_t half = v_size_max / 2 + 1;
    size_t pairs[][2] = {{half, 3}, {3, half}, {(size_t)1 << 33, (size_t)1 << 33}, {v_size_max, 2}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        errno = 0;
        void *q = call_reallocarray(p, pairs[i][0], pairs[i][1]);
        int e = errno;
        CHECK(q == NULL && e == ENOMEM, "reallocarray(p, %#zx, %#zx) returned %p errno %d, expected NULL ENOMEM",
              pairs[i][0], pairs[i][1], q, e);
        if (q) {
            p = q; /* cannot happen; keep the bookkeeping right */
            break;
        }
        CHECK(check_pattern(p, 64, 3) < 0, "a failed reallocarray changed the old block");
        CHECK_OWNS(p);
    }
    CHECK_ENOMEM(reallocarray(NULL, v_size_max, 2));
    CHECK_ENOMEM(reallocarray(NULL, half, 2));
    free(p);
}

/* realloc to an impossible size fails and leaves the old block valid and
 * unchanged. */
static void t_realloc_huge(void)
{
    static const size_t starts[] = {100, 5000, 100000, 8 << 20};
    size_t sizes[16];
    size_t n = huge_sizes(sizes);
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        size_t len = starts[s];
        unsigned char *p = malloc(len);
        REQUIRE(p, "malloc(%zu) failed", len);
        fill_pattern(p, len, len);
        for (size_t i = 0; i < n; i++) {
            errno = 0;
            void *q = realloc(p, sizes[i]);
            int e = errno;
            CHECK(q == NULL && e == ENOMEM, "realloc(%zu-byte block, %#zx) returned %p errno %d, expected NULL ENOMEM",
                  len, sizes[i], q, e);
            if (q) {
                p = q;
                break;
            }
            CHECK_OWNS(p);
            long bad = check_pattern(p, len, len);
            CHECK(bad < 0, "failed realloc(%zu-byte block, %#zx) changed the block at offset %ld", len, sizes[i], bad);
        }
        free(p);
    }
}

/* posix_memalign reports the error as its return value. */
static void t_posix_memalign_huge(void)
{
    size_t sizes[16];
    size_t n = huge_sizes(sizes);
    static const size_t aligns[] = {8, 64, 4096, 1 << 21};
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
        for (size_t i = 0; i < n; i++) {
            void *m = NULL;
            int rc = posix_memalign(&m, aligns[a], sizes[i]);
            CHECK(rc == ENOMEM, "posix_memalign(%zu, %#zx) returned %d, expected ENOMEM (%d)", aligns[a], sizes[i], rc,
                  ENOMEM);
            if (rc == 0)
                free(m);
        }
    }
    void *m = NULL; /* an alignment no address space can satisfy */
    int rc = posix_memalign(&m, (size_t)1 << 62, 1);
    CHECK(rc == ENOMEM, "posix_memalign(1<<62, 1) returned %d, expected ENOMEM", rc);
    if (rc == 0)
        free(m);
}

static void t_aligned_huge(void)
{
    size_t sizes[16];
    size_t n = huge_sizes(sizes);
    for (size_t i = 0; i < n; i++) {
        CHECK_ENOMEM(aligned_alloc(64, sizes[i]));
        CHECK_ENOMEM(aligned_alloc(1 << 21, sizes[i]));
        CHECK_ENOMEM(memalign(64, sizes[i]));
        CHECK_ENOMEM(memalign(4096, sizes[i]));
        CHECK_ENOMEM(valloc(sizes[i]));
        CHECK_ENOMEM(pvalloc(sizes[i])); /* rounding up to a page must not wrap */
    }
    CHECK_ENOMEM(aligned_alloc((size_t)1 << 62, 1));
    CHECK_ENOMEM(memalign((size_t)1 << 62, 1));
}

/* Alignment 0, not a power of two, or not a multiple of sizeof(void *):
 * EINVAL, and *memptr is left as it was. */
static void t_posix_memalign_einval(void)
{
    static const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 48, 96, 100, 4097, 3 << 20, SIZE_MAX};
    void *const sentinel = (void *)(uintptr_t)0x5e7;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *m = sentinel;
        int rc = posix_memalign(&m, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(alignment %zu) returned %d, expected EINVAL (%d)", bad[i], rc, EINVAL);
        CHECK(m == sentinel, "posix_memalign(alignment %zu) failed but changed *memptr to %p", bad[i], m);
        if (rc == 0 && m != sentinel)
            free(m);
    }
}

/* ---- RLIMIT_AS: real mmap failures, in a child process ------------------- */

/* Run fn in a child; the child's checks print to our stderr and its exit
 * status carries the verdict. A signal (a crash on a failed mmap) fails. */
static void in_child(void (*fn)(void), const char *what)
{
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        check_failures = 0; /* the child's verdict is its own */
        alarm(120);         /* a deadlock in the child shows as SIGALRM */
        fn();
        _exit(check_failures ? 1 : 0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    if (WIFSIGNALED(status))
        CHECK(0, "%s: the child was killed by signal %d (%s)", what, WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        CHECK(WEXITSTATUS(status) == 0, "%s: the child exited with %d (see its messages above)", what,
              WEXITSTATUS(status));
}

/* Leave `headroom` bytes of address space above what the process maps now. */
static void limit_address_space(size_t headroom)
{
    /* Warm up every tier first, so that start-up reservations are in place
     * and counted in the current size. */
    static const size_t warm[] = {16, 512, 2048, 20000, 100000, 4 << 20};
    for (size_t i = 0; i < sizeof warm / sizeof warm[0]; i++) {
        void *p = malloc(warm[i]);
        REQUIRE(p, "warm-up malloc(%zu) failed", warm[i]);
        free(p);
    }
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = vsize_bytes() + headroom;
    REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS): %s", strerror(errno));
}

static void large_under_limit(void)
{
    const size_t gib = (size_t)1 << 30;
    limit_address_space(256 * MiB);
    CHECK_ENOMEM(malloc(gib));
    CHECK_ENOMEM(calloc(1, gib));
    CHECK_ENOMEM(calloc(gib / 16, 16));
    CHECK_ENOMEM(aligned_alloc(2 * MiB, gib));
    CHECK_ENOMEM(memalign(4096, gib));
    void *m = NULL;
    int rc = posix_memalign(&m, 2 * MiB, gib);
    CHECK(rc == ENOMEM, "posix_memalign(2 MiB, 1 GiB) under RLIMIT_AS returned %d", rc);

    unsigned char *p = malloc(1000);
    REQUIRE(p, "malloc(1000) failed with 256 MiB of address space left");
    fill_pattern(p, 1000, 1);
    errno = 0;
    void *q = realloc(p, gib);
    int e = errno;
    CHECK(q == NULL && e == ENOMEM, "realloc(1000 B -> 1 GiB) under RLIMIT_AS returned %p errno %d", q, e);
    if (q)
        p = q;
    else
        CHECK(check_pattern(p, 1000, 1) < 0, "the failed realloc changed the old block");
    free(p);

    /* What fits still works. */
    p = malloc(8 * MiB);
    CHECK(p != NULL, "malloc(8 MiB) failed with 256 MiB of address space left: %s", strerror(errno));
    if (p)
        memset(p, 1, 8 * MiB);
    free(p);
}

/* Allocate blocks of the given sizes until malloc says no: it must say so
 * with NULL/ENOMEM, not a crash; then free everything and go on. */
static void exhaust(size_t min, size_t max, size_t headroom)
{
    limit_address_space(headroom);
    /* The live blocks form a list threaded through themselves: no other
     * memory is needed to remember them. */
    void *head = NULL;
    size_t count = 0;
    uint64_t rng = 42;
    const size_t cap = 20 * 1000 * 1000; /* ample: the limit is reached long before */
    int saw_enomem = 0;
    while (count < cap) {
        size_t n = min + (max > min ? rng_next(&rng) % (max - min + 1) : 0);
        errno = 0;
        void **p = malloc(n);
        if (!p) {
            int e = errno;
            CHECK(e == ENOMEM, "malloc(%zu) returned NULL with errno %d (%s), expected ENOMEM", n, e, strerror(e));
            saw_enomem = 1;
            break;
        }
        *p = head;
        head = p;
        count++;
    }
    CHECK(saw_enomem, "%zu allocations of %zu..%zu bytes all succeeded under RLIMIT_AS", count, min, max);
    /* A few more attempts after the first failure must fail cleanly too. */
    for (int i = 0; i < 100; i++) {
        void **p = malloc(min);
        if (p) {
            *p = head;
            head = p;
        }
    }
    while (head) {
        void *next = *(void **)head;
        free(head);
        head = next;
    }
    void *p = malloc(min); /* freed memory can be used again */
    CHECK(p != NULL, "malloc(%zu) failed after freeing everything: %s", min, strerror(errno));
    free(p);
}

static void tiny_exhaust(void)
{
    exhaust(16, 16, 64 * MiB);
}

static void mixed_exhaust(void)
{
    exhaust(16, 70000, 128 * MiB);
}

static void t_rlimit_large(void)
{
    in_child(large_under_limit, "large allocations under RLIMIT_AS");
}

static void t_rlimit_small(void)
{
    in_child(tiny_exhaust, "16-byte allocations until RLIMIT_AS");
    in_child(mixed_exhaust, "16 B..70 KB allocations until RLIMIT_AS");
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"malloc_huge", t_malloc_huge},
        {"calloc_overflow", t_calloc_overflow},
        {"reallocarray_overflow", t_reallocarray_overflow},
        {"realloc_huge", t_realloc_huge},
        {"posix_memalign_huge", t_posix_memalign_huge},
        {"aligned_huge", t_aligned_huge},
        {"posix_memalign_einval", t_posix_memalign_einval},
        {"rlimit_large", t_rlimit_large},
        {"rlimit_small", t_rlimit_small},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
