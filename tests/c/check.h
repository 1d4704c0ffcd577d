/* check.h — the tiny check framework shared by the C and C++ test programs.
 *
 * A program lists its subtests in a `struct subtest` table and ends main
 * with `return run_subtests(argc, argv, tests, N)`:
 *   prog            runs every subtest
 *   prog NAME ...   runs the named subtests (pytest runs one per process)
 *   prog --list     prints the names, one a line
 * Each failed CHECK prints "file:line: [subtest] check failed: expr" plus a
 * message with what was expected and what was seen, and the program exits 1
 * at the end; REQUIRE does the same but stops at once (use it when the code
 * after it would crash on a failure, e.g. a NULL pointer).
 *
 * The programs are not linked with hakmem: they run under LD_PRELOAD, and
 * find hakmem_owns() with dlsym. With HKTEST_GLIBC=1 in the environment the
 * hakmem-only checks (ownership, "this symbol is hakmem's") are skipped so
 * the rest can be validated against glibc's allocator. (The variable is not
 * HAKMEM_* on purpose: those belong to the allocator's configuration.)
 * Compiled with -DHKTEST_LINKED, a program has hakmem built in instead of
 * preloaded (the ThreadSanitizer build). */
#ifndef HKTEST_CHECK_H
#define HKTEST_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_MAX_FAILURES 25

#if defined(__GNUC__)
#define CHECK_UNUSED __attribute__((unused))
#define CHECK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CHECK_UNUSED
#define CHECK_PRINTF(f, a)
#endif

static int check_failures CHECK_UNUSED;
static const char *check_current = "-";

/* Stop now: flush what stdout holds (earlier "ok" lines), then exit 1
 * without running exit handlers, which could trip over the same fault. */
static void check_abort(void) CHECK_UNUSED;
static void check_abort(void)
{
    fflush(stdout);
    _exit(1);
}

static void check_report(const char *file, int line, const char *expr, const char *fmt, ...)
    CHECK_PRINTF(4, 5) CHECK_UNUSED;
static void check_report(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    /* stderr is unbuffered: no allocation is needed to print, which matters
     * when the allocator itself is what broke. */
    fprintf(stderr, "%s:%d: [%s] check failed: %s\n    ", file, line, check_current, expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (++check_failures >= CHECK_MAX_FAILURES) {
        fprintf(stderr, "[%s] %d failed checks: giving up\n", check_current, check_failures);
        check_abort();
    }
}

/* Non-fatal: report and go on. */
#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (!(cond))                                              \
            check_report(__FILE__, __LINE__, #cond, __VA_ARGS__); \
    } while (0)

/* Fatal: report and exit now. */
#define REQUIRE(cond, ...)                                        \
    do {                                                          \
        if (!(cond)) {                                            \
            check_report(__FILE__, __LINE__, #cond, __VA_ARGS__); \
            check_abort();                                        \
        }                                                         \
    } while (0)

/* An allocation failure: the result must be NULL with errno ENOMEM. */
#define CHECK_ENOMEM(call)                                                                                            \
    do {                                                                                                              \
        errno = 0;                                                                                                    \
        void *r_ = (void *)(call);                                                                                    \
        int e_ = errno;                                                                                               \
        CHECK(r_ == NULL && e_ == ENOMEM, "expected NULL with errno ENOMEM from %s, saw %p errno %d (%s)", #call, r_, \
              e_, strerror(e_));                                                                                      \
        if (r_)                                                                                                       \
            free(r_);                                                                                                 \
    } while (0)

#define IS_ALIGNED(p, a) ((((uintptr_t)(p)) & ((uintptr_t)(a)-1)) == 0)

#define CHECK_ALIGNED(p, a)                                                         \
    do {                                                                            \
        const void *pa_ = (p);                                                      \
        size_t al_ = (size_t)(a);                                                   \
        CHECK(IS_ALIGNED(pa_, al_), "%s=%p is not %zu-byte aligned", #p, pa_, al_); \
    } while (0)

/* ---- hakmem-only checks -------------------------------------------------- */

typedef int (*hk_owns_fn)(const void *);

static int hk_glibc_mode(void) CHECK_UNUSED;
static int hk_glibc_mode(void)
{
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("HKTEST_GLIBC");
        mode = (e && *e && strcmp(e, "0") != 0) ? 1 : 0;
    }
    return mode;
}

/* hakmem_owns, or NULL in glibc mode. Exits with a message when it is
 * missing although hakmem is supposed to be loaded. */
static hk_owns_fn hk_owns_lookup(void) CHECK_UNUSED;
static hk_owns_fn hk_owns_lookup(void)
{
    static hk_owns_fn fn;
    static int looked;
    if (!looked) {
        looked = 1;
        if (!hk_glibc_mode()) {
            fn = (hk_owns_fn)dlsym(RTLD_DEFAULT, "hakmem_owns");
            if (!fn) {
                fprintf(stderr,
                        "hakmem_owns not found with dlsym(RTLD_DEFAULT): the program does not run "
                        "under libhakmem.so (LD_PRELOAD=%s); set HKTEST_GLIBC=1 to test glibc\n",
                        getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "(unset)");
                check_abort();
            }
        }
    }
    return fn;
}

/* 1 when p is a live hakmem block (always 1 in glibc mode). */
static int hk_owns(const void *p) CHECK_UNUSED;
static int hk_owns(const void *p)
{
    hk_owns_fn fn = hk_owns_lookup();
    return fn ? fn(p) != 0 : 1;
}

#define CHECK_OWNS(p)                                                                              \
    do {                                                                                           \
        const void *po_ = (p);                                                                     \
        CHECK(hk_owns(po_), "%s=%p is not a live hakmem block (hakmem_owns returned 0)", #p, po_); \
    } while (0)

/* After free: hakmem.h documents hakmem_owns as true only for live blocks.
 * Takes the address as an integer saved before the free (ADDR_OF), so that
 * GCC's -Wuse-after-free does not object to looking at a freed pointer. */
#define ADDR_OF(p) ((uintptr_t)(const void *)(p))
/* A freed block was really released: a freed Large block (> 32 KiB) is no
 * longer owned; a freed small block sits in the thread cache (hakmem.h:
 * hakmem_owns does not track small blocks' liveness), so the next
 * allocation of its size class must hand the same block back. */
#define CHECK_RELEASED_BY(addr, size, alloc_expr, free_fn)                                                       \
    do {                                                                                                          \
        if ((size) > 32768) {                                                                                     \
            CHECK_NOT_OWNS(addr);                                                                                 \
        } else if (hk_owns_lookup()) {                                                                            \
            void *again_ = (alloc_expr);                                                                          \
            if ((uintptr_t)again_ != (addr))                                                                      \
                check_report(__FILE__, __LINE__, "freed block handed out again",                                  \
                             "%#lx (%zu bytes) was freed but the same allocation returned %p",                    \
                             (unsigned long)(addr), (size_t)(size), again_);                                      \
            free_fn(again_);                                                                                      \
        }                                                                                                         \
    } while (0)
#define CHECK_RELEASED(addr, size) CHECK_RELEASED_BY(addr, size, malloc(size), free)

#define CHECK_NOT_OWNS(addr)                                                                                      \
    do {                                                                                                          \
        volatile uintptr_t an_ = (addr);                                                                          \
        hk_owns_fn fn_ = hk_owns_lookup();                                                                        \
        if (fn_ && fn_((const void *)an_))                                                                        \
            check_report(__FILE__, __LINE__, "hakmem_owns(freed block) == 0",                                     \
                         "%#lx (%s) was freed but hakmem_owns still says it is live", (unsigned long)an_, #addr); \
    } while (0)

/* The symbol `name` as the program binds it must come from libhakmem: checks
 * that the object dladdr names for its address is libhakmem*. */
static void *hk_lookup_hakmem_symbol(const char *file, int line, const char *name) CHECK_UNUSED;
static void *hk_lookup_hakmem_symbol(const char *file, int line, const char *name)
{
    void *sym = dlsym(RTLD_DEFAULT, name);
    if (hk_glibc_mode())
        return sym;
    if (!sym) {
        check_report(file, line, name, "dlsym(RTLD_DEFAULT, \"%s\") found nothing: hakmem must export it", name);
        return NULL;
    }
#ifdef HKTEST_LINKED
    /* hakmem is compiled into this program (the ThreadSanitizer build of
     * tests/test_tiny_threads.py, linked with -rdynamic): its symbols are
     * the program's own. */
    return sym;
#endif
    Dl_info info;
    memset(&info, 0, sizeof info);
    if (!dladdr(sym, &info) || !info.dli_fname || !strstr(info.dli_fname, "libhakmem")) {
        check_report(file, line, name, "the first \"%s\" found is in %s, not in libhakmem", name,
                     info.dli_fname ? info.dli_fname : "(unknown object)");
    }
    return sym;
}
#define HAKMEM_SYMBOL(name) hk_lookup_hakmem_symbol(__FILE__, __LINE__, name)

/* glibc's own allocator must never have been used: its main arena has no
 * memory from sbrk and it has mapped no chunk. We ask glibc itself: the
 * mallinfo2 found in libc.so.6's own scope is glibc's, not the preloaded one.
 * (Calling it only initialises glibc's bookkeeping; it allocates nothing.) */
#define CHECK_GLIBC_HEAP_UNUSED() check_glibc_heap_unused(__FILE__, __LINE__)
static void glibc_heap_report(const char *file, int line) CHECK_UNUSED;
static void check_glibc_heap_unused(const char *file, int line) CHECK_UNUSED;
static void check_glibc_heap_unused(const char *file, int line)
{
    if (hk_glibc_mode() || !hk_owns_lookup())
        return;
    glibc_heap_report(file, line);
}

static void glibc_heap_report(const char *file, int line)
{
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!libc) {
        check_report(file, line, "dlopen(libc.so.6, RTLD_NOLOAD)", "failed: %s", dlerror());
        return;
    }
    struct mallinfo2 (*glibc_mallinfo2)(void) = (struct mallinfo2(*)(void))dlsym(libc, "mallinfo2");
    if (!glibc_mallinfo2) {
        check_report(file, line, "dlsym(libc, mallinfo2)", "glibc's mallinfo2 not found");
    } else {
        struct mallinfo2 mi = glibc_mallinfo2();
        if (mi.arena != 0 || mi.hblkhd != 0 || mi.hblks != 0)
            check_report(file, line, "glibc heap unused",
                         "glibc's own malloc was used: its arena has %zu bytes from sbrk, "
                         "%zu mmapped chunks of %zu bytes",
                         mi.arena, mi.hblks, mi.hblkhd);
    }
    dlclose(libc);
}

/* ---- helpers ------------------------------------------------------------- */

/* Field `index` of /proc/self/statm (0 virtual size, 1 resident), in
 * bytes; read without stdio so that measuring does not allocate. */
static size_t statm_bytes(int index) CHECK_UNUSED;
static size_t statm_bytes(int index)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    REQUIRE(fd >= 0, "open /proc/self/statm: %s", strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    REQUIRE(n > 0, "read /proc/self/statm");
    buf[n] = 0;
    unsigned long pages[2] = {0, 0};
    REQUIRE(sscanf(buf, "%lu %lu", &pages[0], &pages[1]) == 2, "parse statm '%s'", buf);
    return (size_t)pages[index] * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t rss_bytes(void) CHECK_UNUSED;
static size_t rss_bytes(void)
{
    return statm_bytes(1);
}

static size_t vsize_bytes(void) CHECK_UNUSED;
static size_t vsize_bytes(void)
{
    return statm_bytes(0);
}

#define MiB ((size_t)1 << 20)

/* A position-dependent pattern, so that a block copied to the wrong offset
 * or overlapping another block is noticed. Word-wise for speed on 64 MiB;
 * byte i depends only on i and the seed, so a prefix of a longer fill is a
 * shorter fill (what realloc's checks rely on). */
static void fill_pattern(void *p, size_t n, uint64_t seed) CHECK_UNUSED;
static void fill_pattern(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = (unsigned char *)p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t v = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        memcpy(b + i * 8, &v, 8);
    }
    if (n % 8) { /* the tail is a prefix of the next word: any prefix of a
                    fill equals a shorter fill */
        uint64_t v = (words + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        memcpy(b + words * 8, &v, n % 8);
    }
}

/* Offset of the first byte that differs from fill_pattern(seed), or -1. */
static long check_pattern(const void *p, size_t n, uint64_t seed) CHECK_UNUSED;
static long check_pattern(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t v = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed, w;
        memcpy(&w, b + i * 8, 8);
        if (w != v)
            return (long)(i * 8);
    }
    if (n % 8) {
        uint64_t v = (words + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        unsigned char want[8];
        memcpy(want, &v, 8);
        for (size_t i = 0; i < n % 8; i++)
            if (b[words * 8 + i] != want[i])
                return (long)(words * 8 + i);
    }
    return -1;
}

/* Offset of the first byte of p[0..n) that is not `byte`, or -1. */
static long find_not_byte(const void *p, size_t n, unsigned char byte) CHECK_UNUSED;
static long find_not_byte(const void *p, size_t n, unsigned char byte)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i = 0;
    uint64_t w = 0x0101010101010101ull * byte;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, b + i, 8);
        if (v != w)
            break;
    }
    for (; i < n; i++)
        if (b[i] != byte)
            return (long)i;
    return -1;
}

/* A small deterministic PRNG (xorshift64*), so runs are reproducible. */
static uint64_t rng_next(uint64_t *s) CHECK_UNUSED;
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* ---- subtest dispatch ---------------------------------------------------- */

struct subtest {
    const char *name;
    void (*fn)(void);
};

static int run_subtests(int argc, char **argv, const struct subtest *tests, size_t n) CHECK_UNUSED;
static int run_subtests(int argc, char **argv, const struct subtest *tests, size_t n)
{
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    hk_owns_lookup(); /* resolve once, before any thread starts */
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        int wanted = argc <= 1;
        for (int a = 1; a < argc && !wanted; a++)
            wanted = strcmp(argv[a], tests[i].name) == 0;
        if (!wanted)
            continue;
        int before = check_failures;
        check_current = tests[i].name;
        tests[i].fn();
        /* Whatever the subtest did, none of it may have reached glibc's malloc. */
        check_glibc_heap_unused(__FILE__, __LINE__);
        printf("%s %s\n", check_failures == before ? "ok" : "FAILED", tests[i].name);
        fflush(stdout);
        ran++;
    }
    if (ran == 0 || (argc > 1 && ran != argc - 1)) {
        fprintf(stderr, "unknown subtest name among the arguments; --list shows them\n");
        return 2;
    }
    return check_failures ? 1 : 0;
}

#endif
