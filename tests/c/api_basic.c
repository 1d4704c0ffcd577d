/* api_basic — one subtest per entry point of the malloc API: each one is
 * exported by hakmem, does what the C standard / POSIX / glibc documents, and
 * returns hakmem blocks. */
#include "check.h"

#include <stdbool.h>

/* glibc >= 2.26 keeps cfree only as a compat symbol (no declaration, and a
 * new link cannot bind to it); C23's free_sized and free_aligned_sized are not
 * in glibc 2.36. All three are looked up at run time. */
typedef void (*cfree_fn)(void *);
typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Allocation functions checked in every subtest: result non-NULL, owned,
 * usable size at least n, all of it writable. */
static void check_block(const char *what, void *p, size_t n, size_t align)
{
    REQUIRE(p != NULL, "%s(%zu) returned NULL: %s", what, n, strerror(errno));
    CHECK_OWNS(p);
    CHECK(IS_ALIGNED(p, align), "%s(%zu) = %p is not %zu-byte aligned", what, n, p, align);
    size_t usable = malloc_usable_size(p);
    CHECK(usable >= n, "%s(%zu): malloc_usable_size = %zu < request", what, n, usable);
    memset(p, 0x5A, usable);
}

static void t_malloc_free(void)
{
    for (size_t n = 1; n <= 1 << 20; n *= 3) {
        void *p = malloc(n);
        check_block("malloc", p, n, n >= 16 ? 16 : 1);
        free(p);
    }
}

/* malloc(0) returns NULL or a unique pointer that free accepts. */
static void t_malloc_zero(void)
{
    void *a = malloc(0), *b = malloc(0);
    if (a)
        CHECK_OWNS(a);
    if (b)
        CHECK_OWNS(b);
    CHECK(a == NULL || a != b, "two live malloc(0) blocks share the address %p", a);
    free(a);
    free(b);
}

static void t_free_null(void)
{
    free(NULL); /* must be a no-op */
    void *p = malloc(10);
    REQUIRE(p, "malloc(10) failed");
    free(p);
}

static void t_calloc(void)
{
    static const size_t counts[] = {1, 3, 16, 1000, 4096, 70000};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        for (size_t elem = 1; elem <= 64; elem *= 4) {
            size_t n = counts[i] * elem;
            unsigned char *p = calloc(counts[i], elem);
            REQUIRE(p, "calloc(%zu, %zu) failed", counts[i], elem);
            long bad = find_not_byte(p, n, 0);
            CHECK(bad < 0, "calloc(%zu, %zu): byte %ld is %#x, not 0", counts[i], elem, bad, bad >= 0 ? p[bad] : 0);
            check_block("calloc", p, n, n >= 16 ? 16 : 1);
            free(p);
        }
    }
    void *z = calloc(0, 16); /* NULL or freeable */
    if (z)
        CHECK_OWNS(z);
    free(z);
}

static void t_realloc(void)
{
    char *p = realloc(NULL, 10); /* realloc(NULL, n) is malloc(n) */
    check_block("realloc(NULL)", p, 10, 1);
    memcpy(p, "abcdefghi", 10);
    char *q = realloc(p, 100000);
    check_block("realloc", q, 100000, 16);
    /* check_block overwrote it; refill and shrink. */
    memcpy(q, "abcdefghi", 10);
    char *r = realloc(q, 5);
    REQUIRE(r, "realloc shrink failed");
    CHECK_OWNS(r);
    CHECK(memcmp(r, "abcde", 5) == 0, "realloc shrink lost contents: '%.5s'", r);
    free(r);
}

static void t_reallocarray(void)
{
    int *p = reallocarray(NULL, 100, sizeof(int));
    REQUIRE(p, "reallocarray(NULL, 100, 4) failed");
    CHECK_OWNS(p);
    for (int i = 0; i < 100; i++)
        p[i] = i * 7;
    int *q = reallocarray(p, 10000, sizeof(int));
    REQUIRE(q, "reallocarray grow failed");
    CHECK_OWNS(q);
    for (int i = 0; i < 100; i++)
        CHECK(q[i] == i * 7, "reallocarray lost element %d: %d", i, q[i]);
    CHECK(malloc_usable_size(q) >= 10000 * sizeof(int), "usable size %zu", malloc_usable_size(q));
    free(q);
}

static void t_memalign(void)
{
    for (size_t align = 1; align <= 65536; align *= 2) {
        void *p = memalign(align, 100);
        check_block("memalign", p, 100, align);
        free(p);
    }
}

static void t_posix_memalign(void)
{
    for (size_t align = sizeof(void *); align <= 65536; align *= 2) {
        void *p = NULL;
        int rc = posix_memalign(&p, align, 100);
        CHECK(rc == 0, "posix_memalign(%zu, 100) returned %d", align, rc);
        check_block("posix_memalign", p, 100, align);
        free(p);
    }
}

static void t_aligned_alloc(void)
{
    for (size_t align = 1; align <= 65536; align *= 2) {
        /* A multiple of the alignment (C11) and not (C17 allows it). */
        void *p = aligned_alloc(align, align * 2);
        check_block("aligned_alloc", p, align * 2, align);
        free(p);
        p = aligned_alloc(align, 100);
        check_block("aligned_alloc", p, 100, align);
        free(p);
    }
}

static void t_valloc(void)
{
    size_t sizes[] = {1, 100, page_size(), page_size() + 1, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = valloc(sizes[i]);
        check_block("valloc", p, sizes[i], page_size());
        free(p);
    }
}

/* pvalloc rounds the size up to a whole page. */
static void t_pvalloc(void)
{
    size_t pg = page_size();
    size_t sizes[] = {1, 100, pg, pg + 1, 3 * pg - 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t rounded = (sizes[i] + pg - 1) / pg * pg;
        void *p = pvalloc(sizes[i]);
        check_block("pvalloc", p, rounded, pg);
        free(p);
    }
}

static void t_cfree(void)
{
    cfree_fn fn = (cfree_fn)HAKMEM_SYMBOL("cfree");
    if (!fn && hk_glibc_mode())
        fn = (cfree_fn)dlvsym(RTLD_DEFAULT, "cfree", "GLIBC_2.2.5");
    REQUIRE(fn, "cfree not found");
    for (size_t n = 1; n < 1 << 22; n *= 5) {
        void *p = malloc(n);
        REQUIRE(p, "malloc(%zu) failed", n);
        fn(p);
    }
    fn(NULL);
}

static void t_free_sized(void)
{
    free_sized_fn fn = (free_sized_fn)HAKMEM_SYMBOL("free_sized");
    if (!fn && hk_glibc_mode())
        return; /* glibc 2.36 has no free_sized */
    REQUIRE(fn, "free_sized not found");
    for (size_t n = 1; n < 1 << 22; n = n * 3 + 1) {
        void *p = malloc(n);
        REQUIRE(p, "malloc(%zu) failed", n);
        fn(p, n); /* the size passed to malloc */
        p = calloc(n, 2);
        REQUIRE(p, "calloc(%zu, 2) failed", n);
        fn(p, n * 2); /* nmemb * size for calloc */
        p = malloc(n);
        REQUIRE(p, "malloc(%zu) failed", n);
        void *q = realloc(p, n + 100);
        REQUIRE(q, "realloc failed");
        fn(q, n + 100); /* the new size for realloc */
    }
    fn(NULL, 0);
    fn(NULL, 123);
}

static void t_free_aligned_sized(void)
{
    free_aligned_sized_fn fn = (free_aligned_sized_fn)HAKMEM_SYMBOL("free_aligned_sized");
    if (!fn && hk_glibc_mode())
        return; /* glibc 2.36 has no free_aligned_sized */
    REQUIRE(fn, "free_aligned_sized not found");
    for (size_t align = 1; align <= 1 << 21; align *= 4) {
        for (size_t n = align; n < 3 * align + 5000; n += align + 1000) {
            void *p = aligned_alloc(align, n);
            REQUIRE(p, "aligned_alloc(%zu, %zu) failed", align, n);
            fn(p, align, n);
        }
    }
    fn(NULL, 64, 0);
}

static void t_usable_size(void)
{
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu, expected 0", malloc_usable_size(NULL));
    /* Three neighbours written over their whole usable size each must not
     * disturb one another. */
    for (size_t n = 1; n <= 1 << 18; n = n * 2 + 3) {
        unsigned char *p[3];
        size_t u[3];
        for (int i = 0; i < 3; i++) {
            p[i] = malloc(n);
            REQUIRE(p[i], "malloc(%zu) failed", n);
            u[i] = malloc_usable_size(p[i]);
            CHECK(u[i] >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u[i]);
            memset(p[i], 0x11 * (i + 1), u[i]);
        }
        for (int i = 0; i < 3; i++) {
            long bad = find_not_byte(p[i], u[i], (unsigned char)(0x11 * (i + 1)));
            CHECK(bad < 0, "block %d of size %zu (usable %zu) overwritten at %ld", i, n, u[i], bad);
            free(p[i]);
        }
    }
}

static void t_malloc_trim(void)
{
    void *blocks[64];
    for (int i = 0; i < 64; i++) {
        blocks[i] = malloc((size_t)(i + 1) * 4096);
        REQUIRE(blocks[i], "malloc failed");
    }
    for (int i = 0; i < 64; i++)
        free(blocks[i]);
    int r = malloc_trim(0);
    CHECK(r == 0 || r == 1, "malloc_trim(0) returned %d, expected 0 or 1", r);
    r = malloc_trim(1 << 20);
    CHECK(r == 0 || r == 1, "malloc_trim(1 MiB) returned %d, expected 0 or 1", r);
    void *p = malloc(1000); /* still works after a trim */
    check_block("malloc", p, 1000, 16);
    free(p);
}

static void t_mallopt(void)
{
    static const int params[][2] = {
        {M_MMAP_THRESHOLD, 256 * 1024},
        {M_TRIM_THRESHOLD, 1 << 20},
        {M_TOP_PAD, 0},
        {M_ARENA_MAX, 2},
        {M_MXFAST, 64},
        {M_CHECK_ACTION, 0},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        int r = mallopt(params[i][0], params[i][1]);
        CHECK(r == 0 || r == 1, "mallopt(%d, %d) returned %d, expected 0 or 1", params[i][0], params[i][1], r);
    }
    void *p = malloc(300 * 1024); /* allocation still works whatever was accepted */
    check_block("malloc", p, 300 * 1024, 16);
    free(p);
}

/* mallinfo's in-use total (uordblks + hblkhd) covers what is live. */
static void t_mallinfo(void)
{
    void *big = malloc(8 * MiB);
    REQUIRE(big, "malloc(8 MiB) failed");
    memset(big, 1, 8 * MiB);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo mi = mallinfo();
#pragma GCC diagnostic pop
    long long in_use = (long long)mi.uordblks + (long long)mi.hblkhd;
    CHECK(in_use >= (long long)(8 * MiB), "mallinfo: uordblks %d + hblkhd %d < 8 MiB live", mi.uordblks, mi.hblkhd);
    CHECK(mi.arena >= 0 && mi.uordblks >= 0 && mi.fordblks >= 0 && mi.hblkhd >= 0,
          "mallinfo has negative fields: arena %d uordblks %d fordblks %d hblkhd %d", mi.arena, mi.uordblks,
          mi.fordblks, mi.hblkhd);
    free(big);
}

static void t_mallinfo2(void)
{
    void *big = malloc(8 * MiB);
    REQUIRE(big, "malloc(8 MiB) failed");
    memset(big, 1, 8 * MiB);
    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.uordblks + mi.hblkhd >= 8 * MiB, "mallinfo2: uordblks %zu + hblkhd %zu < 8 MiB live", mi.uordblks,
          mi.hblkhd);
    /* Garbage (an uninitialised field, a negative count) shows as huge. */
    const size_t absurd = (size_t)1 << 44;
    size_t fields[] = {mi.arena,   mi.ordblks, mi.smblks,   mi.hblks,    mi.hblkhd,
                       mi.usmblks, mi.fsmblks, mi.uordblks, mi.fordblks, mi.keepcost};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        CHECK(fields[i] < absurd, "mallinfo2 field %zu is absurd: %zu", i, fields[i]);
    free(big);
}

static void t_malloc_stats(void)
{
    void *p = malloc(1000);
    REQUIRE(p, "malloc failed");
    malloc_stats(); /* prints to stderr; must not crash or deadlock */
    free(p);
}

/* malloc_info(0, fp) writes an XML document whose root is <malloc ...>. */
static void t_malloc_info(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    REQUIRE(fp, "open_memstream failed");
    void *p = malloc(5000);
    REQUIRE(p, "malloc failed");
    int r = malloc_info(0, fp);
    fclose(fp);
    free(p);
    CHECK(r == 0, "malloc_info(0, fp) returned %d", r);
    REQUIRE(buf, "no output buffer");
    CHECK_OWNS(buf); /* open_memstream's buffer is a hakmem block too */
    CHECK(strncmp(buf, "<malloc", 7) == 0, "malloc_info output does not start with <malloc: '%.60s'", buf);
    /* Well-formed-ish: tags balance and the root element is closed. */
    size_t lt = 0, gt = 0;
    for (size_t i = 0; i < len; i++) {
        lt += buf[i] == '<';
        gt += buf[i] == '>';
    }
    CHECK(lt == gt && lt >= 2, "unbalanced tags in malloc_info output (%zu '<', %zu '>')", lt, gt);
    size_t end = len;
    while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == ' '))
        end--;
    CHECK(end >= 9 && (strncmp(buf + end - 9, "</malloc>", 9) == 0 || strncmp(buf + end - 2, "/>", 2) == 0),
          "malloc_info output does not end with </malloc>: '...%s'", buf + (end > 40 ? end - 40 : 0));
    free(buf);

    /* options must be 0. The man page says -1 with errno EINVAL, glibc
     * returns EINVAL itself: either is accepted, success is not. */
    fp = fopen("/dev/null", "w");
    REQUIRE(fp, "fopen /dev/null failed");
    errno = 0;
    r = malloc_info(1, fp);
    int e = errno;
    CHECK(r == EINVAL || (r == -1 && e == EINVAL),
          "malloc_info(1, fp) returned %d errno %d, expected an EINVAL failure", r, e);
    fclose(fp);
}

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void *(*memalign_fn)(size_t, size_t);

/* glibc's __libc_* names are used by old code and by some interposers; the
 * first definition found must be hakmem's and interchangeable with free. */
static void t_libc_aliases(void)
{
    malloc_fn l_malloc = (malloc_fn)HAKMEM_SYMBOL("__libc_malloc");
    free_fn l_free = (free_fn)HAKMEM_SYMBOL("__libc_free");
    calloc_fn l_calloc = (calloc_fn)HAKMEM_SYMBOL("__libc_calloc");
    realloc_fn l_realloc = (realloc_fn)HAKMEM_SYMBOL("__libc_realloc");
    memalign_fn l_memalign = (memalign_fn)HAKMEM_SYMBOL("__libc_memalign");
    malloc_fn l_valloc = (malloc_fn)HAKMEM_SYMBOL("__libc_valloc");
    malloc_fn l_pvalloc = (malloc_fn)HAKMEM_SYMBOL("__libc_pvalloc");
    REQUIRE(l_malloc && l_free && l_calloc && l_realloc && l_memalign && l_valloc && l_pvalloc,
            "a __libc_* alias is missing");
    size_t pg = page_size();

    char *p = l_malloc(100);
    check_block("__libc_malloc", p, 100, 16);
    memcpy(p, "hello", 6);
    char *q = l_realloc(p, 20000);
    REQUIRE(q, "__libc_realloc failed");
    CHECK_OWNS(q);
    CHECK(strcmp(q, "hello") == 0, "__libc_realloc lost contents");
    free(q); /* __libc_* blocks are ordinary blocks */

    unsigned char *z = l_calloc(100, 10);
    REQUIRE(z, "__libc_calloc failed");
    CHECK_OWNS(z);
    CHECK(find_not_byte(z, 1000, 0) < 0, "__libc_calloc memory not zero");
    l_free(z);

    void *a = l_memalign(256, 1000);
    check_block("__libc_memalign", a, 1000, 256);
    l_free(a);
    void *v = l_valloc(10);
    check_block("__libc_valloc", v, 10, pg);
    l_free(v);
    void *pv = l_pvalloc(10);
    check_block("__libc_pvalloc", pv, pg, pg);
    l_free(pv);

    void *m = malloc(50); /* malloc's block freed by __libc_free */
    REQUIRE(m, "malloc failed");
    l_free(m);
    l_free(NULL);
}

/* hakmem.h: a freed block is released (not owned once freed for Large
 * blocks, handed out again for small ones); hakmem_owns never faults. */
static void t_owns_after_free(void)
{
    static const size_t sizes[] = {1, 24, 1000, 5000, 40000, 300000, 5 << 20};
    if (hk_glibc_mode())
        return;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        REQUIRE(p, "malloc(%zu) failed", sizes[i]);
        CHECK_OWNS(p);
        uintptr_t addr = ADDR_OF(p);
        free(p);
        CHECK_RELEASED(addr, sizes[i]);
        p = aligned_alloc(4096, sizes[i]);
        REQUIRE(p, "aligned_alloc(4096, %zu) failed", sizes[i]);
        CHECK_OWNS(p);
        addr = ADDR_OF(p);
        free(p);
        if (sizes[i] > 32768)
            CHECK_NOT_OWNS(addr);
    }
    /* Never faults on foreign or wild pointers, and says no. */
    static int a_static;
    int on_stack = 0;
    const void *foreign[] = {
        &a_static,          &on_stack, (void *)t_owns_after_free, (void *)16, (void *)(uintptr_t)0x7ffffffff000ull,
        (void *)UINTPTR_MAX};
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++)
        CHECK(!hk_owns(foreign[i]), "hakmem_owns(%p) says a non-heap address is a hakmem block", foreign[i]);
    CHECK(!hk_owns(NULL), "hakmem_owns(NULL) is non-zero");
}

/* Every name of the API is defined by libhakmem (the first definition in
 * the lookup order is hakmem's, so nothing can bind to glibc's). */
static void t_symbols_are_hakmem(void)
{
    static const char *const names[] = {
        "malloc",
        "free",
        "calloc",
        "realloc",
        "reallocarray",
        "memalign",
        "posix_memalign",
        "aligned_alloc",
        "valloc",
        "pvalloc",
        "cfree",
        "free_sized",
        "free_aligned_sized",
        "malloc_usable_size",
        "malloc_trim",
        "mallopt",
        "mallinfo",
        "mallinfo2",
        "malloc_stats",
        "malloc_info",
        "__libc_malloc",
        "__libc_free",
        "__libc_calloc",
        "__libc_realloc",
        "__libc_memalign",
        "__libc_valloc",
        "__libc_pvalloc",
        "hakmem_owns",
        "hakmem_tier_of",
        "hakmem_stats_get",
        "hakmem_version",
        "hakmem_config_print",
        "hakmem_print_summary",
    };
    if (hk_glibc_mode())
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        (void)HAKMEM_SYMBOL(names[i]);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"malloc_free", t_malloc_free},
        {"malloc_zero", t_malloc_zero},
        {"free_null", t_free_null},
        {"calloc", t_calloc},
        {"realloc", t_realloc},
        {"reallocarray", t_reallocarray},
        {"memalign", t_memalign},
        {"posix_memalign", t_posix_memalign},
        {"aligned_alloc", t_aligned_alloc},
        {"valloc", t_valloc},
        {"pvalloc", t_pvalloc},
        {"cfree", t_cfree},
        {"free_sized", t_free_sized},
        {"free_aligned_sized", t_free_aligned_sized},
        {"usable_size", t_usable_size},
        {"malloc_trim", t_malloc_trim},
        {"mallopt", t_mallopt},
        {"mallinfo", t_mallinfo},
        {"mallinfo2", t_mallinfo2},
        {"malloc_stats", t_malloc_stats},
        {"malloc_info", t_malloc_info},
        {"libc_aliases", t_libc_aliases},
        {"owns_after_free", t_owns_after_free},
        {"symbols_are_hakmem", t_symbols_are_hakmem},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
