/* Shared helpers for the hakmem benchmark programs (one .c file per workload).
 *
 * Every program is one translation unit built by the Makefile's pattern rule,
 * so the helpers are static inline. None of them calls malloc: /proc is read
 * with open/read and harness bookkeeping that must not pollute the heap under
 * test is mmap'ed, so the allocator sees only the workload's own requests.
 *
 * Command line of every program: NAME [scale] [threads]
 *   scale    float multiplier of the op count; 1.0 is the full run
 *   threads  worker count for the multi-threaded workloads (default 1)
 * Environment:
 *   BENCH_OPS=N       exact op count, overriding the scale (used by the
 *                     instruction-count method, which needs two exact counts)
 *   BENCH_RSS_TRACE   file for RSS-over-time samples (frag_stress)
 *
 * The last line of output is machine-readable:
 *   RESULT name=... threads=... seconds=... ops=... peak_rss_kb=...
 *          end_rss_kb=... live_bytes=... [extra key=value ...]
 * end_rss_kb and live_bytes are taken at the same moment: at the end of the
 * measured work, before any teardown. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BENCH_SEED 0x5eed1234abcdULL
#define BENCH_PAGE 4096

/* ---- time ------------------------------------------------------------- */

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleep without touching the allocator: the "idle" phase must let only
 * background work (timers, purger threads) happen. */
static inline void bench_sleep(double seconds)
{
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- random numbers ----------------------------------------------------- */

/* xorshift64*: fast, and a fixed seed makes every allocator see the very
 * same request sequence. */
typedef struct {
    uint64_t s;
} bench_rng;

static inline void rng_seed(bench_rng *r, uint64_t stream)
{
    r->s = (BENCH_SEED ^ (stream * 0x9E3779B97F4A7C15ULL)) | 1;
}

static inline uint64_t rng_next(bench_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n) by multiply-shift: no division on the hot path. */
static inline uint64_t rng_below(bench_rng *r, uint64_t n)
{
    __extension__ typedef unsigned __int128 u128;
    return (uint64_t)(((u128)rng_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline size_t rng_between(bench_rng *r, size_t lo, size_t hi)
{
    return lo + (size_t)rng_below(r, hi - lo + 1);
}

static inline double rng_unit(bench_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Sizes are drawn log-uniformly (as many 8-16 B as 512-1024 B requests),
 * which is closer to real programs than a flat distribution. The draw is
 * tabulated so the hot loop does not pay for exp(). */
#define SIZE_TABLE_LEN 4096
struct size_table {
    size_t v[SIZE_TABLE_LEN];
};

static inline void size_table_log_uniform(struct size_table *t, size_t lo, size_t hi, uint64_t stream)
{
    bench_rng r;
    rng_seed(&r, stream);
    double span = log((double)hi / (double)lo);
    for (size_t i = 0; i < SIZE_TABLE_LEN; i++) {
        size_t n = (size_t)((double)lo * exp(span * rng_unit(&r)));
        t->v[i] = n < lo ? lo : n > hi ? hi : n;
    }
}

static inline size_t size_table_pick(const struct size_table *t, bench_rng *r)
{
    return t->v[rng_next(r) & (SIZE_TABLE_LEN - 1)];
}

/* ---- /proc ------------------------------------------------------------ */

/* "VmHWM" or "VmRSS" from /proc/self/status, in KiB (-1 if unreadable). */
static inline long bench_status_kb(const char *key)
{
    char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t len = 0, n;
    while (len < (ssize_t)sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - (size_t)len)) > 0)
        len += n;
    close(fd);
    buf[len < 0 ? 0 : len] = '\0';
    size_t klen = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            return strtol(line + klen + 1, NULL, 10);
    }
    return -1;
}

static inline long bench_peak_rss_kb(void)
{
    return bench_status_kb("VmHWM");
}
static inline long bench_rss_kb(void)
{
    return bench_status_kb("VmRSS");
}

/* ---- checked allocation ----------------------------------------------- */

static inline void bench_die(const char *what, size_t n)
{
    fprintf(stderr, "bench: %s(%zu) failed\n", what, n);
    abort();
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        bench_die("malloc", n);
    return p;
}

static inline void *xrealloc(void *old, size_t n)
{
    void *p = realloc(old, n);
    if (!p)
        bench_die("realloc", n);
    return p;
}

/* Harness bookkeeping lives outside the heap under test. Pages are touched
 * only as they are used, so a generous reservation costs no RSS. */
static inline void *bench_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        bench_die("mmap", n);
    return p;
}

static inline void bench_unmap(void *p, size_t n)
{
    munmap(p, n);
}

/* Give back the pages of a bench_map() area of `size` bytes from `keep`
 * bytes on (the harness's own bookkeeping it no longer needs). */
static inline void bench_release_tail(void *p, size_t keep, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    keep = (keep + page - 1) / page * page;
    if (keep < size)
        madvise((char *)p + keep, size - keep, MADV_DONTNEED);
}

/* Write the first and last byte and one byte per page: the block must really
 * be n bytes long, its pages become resident (so RSS is honest), and a large
 * block is not turned into a memset benchmark. */
static inline void bench_touch(void *p, size_t n, unsigned char tag)
{
    volatile unsigned char *b = p;
    b[0] = tag;
    for (size_t off = BENCH_PAGE; off < n; off += BENCH_PAGE)
        b[off] = tag;
    b[n - 1] = tag;
}

/* Catches a block handed out twice or overwritten while live. */
static inline void bench_check(const void *p, size_t n, unsigned char tag)
{
    const volatile unsigned char *b = p;
    if (b[0] != tag || b[n - 1] != tag) {
        fprintf(stderr, "bench: block %p (%zu B) was overwritten while live\n", p, n);
        abort();
    }
}

/* ---- arguments and result --------------------------------------------- */

struct bench_args {
    double scale;
    int threads;
};

static inline struct bench_args bench_parse(int argc, char **argv)
{
    struct bench_args a = {1.0, 1};
    if (argc > 1)
        a.scale = strtod(argv[1], NULL);
    if (argc > 2)
        a.threads = atoi(argv[2]);
    if (!(a.scale > 0) || a.threads < 1 || a.threads > 1024) {
        fprintf(stderr, "usage: %s [scale>0] [threads 1..1024]\n", argv[0]);
        exit(2);
    }
    return a;
}

/* Op count of this run: BENCH_OPS exactly, else the full count times the
 * scale (at least 1). */
static inline uint64_t bench_ops(const struct bench_args *a, uint64_t full)
{
    const char *env = getenv("BENCH_OPS");
    if (env && *env)
        return strtoull(env, NULL, 10);
    double n = (double)full * a->scale;
    return n < 1 ? 1 : (uint64_t)n;
}

static inline double bench_env_double(const char *name, double fallback)
{
    const char *env = getenv(name);
    return env && *env ? strtod(env, NULL) : fallback;
}

/* extra: "" or " key=value key=value". */
static inline void bench_result(const char *name, int threads, double seconds, uint64_t ops, long end_rss_kb,
                                uint64_t live_bytes, const char *extra)
{
    printf("RESULT name=%s threads=%d seconds=%.6f ops=%llu peak_rss_kb=%ld end_rss_kb=%ld "
           "live_bytes=%llu%s\n",
           name, threads, seconds, (unsigned long long)ops, bench_peak_rss_kb(), end_rss_kb,
           (unsigned long long)live_bytes, extra ? extra : "");
    fflush(stdout);
}

/* ---- threads ---------------------------------------------------------- */

/* Starts n threads running fn(arg_base + i * arg_size). */
static inline void bench_spawn(pthread_t *tids, int n, void *(*fn)(void *), void *arg_base, size_t arg_size)
{
    for (int i = 0; i < n; i++) {
        if (pthread_create(&tids[i], NULL, fn, (char *)arg_base + (size_t)i * arg_size) != 0)
            bench_die("pthread_create", (size_t)i);
    }
}

static inline void bench_join(pthread_t *tids, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(tids[i], NULL);
}

/* ---- working sets with random replacement ------------------------------ */

/* A fixed number of slots, each holding one live block. Replacing a random
 * slot gives every block a random (geometric) lifetime, the classic
 * "random replacement" model of glibc-simple / alloc-test style benchmarks. */
struct slot_set {
    void **ptr;
    size_t *size;
    size_t n;
    uint64_t live; /* bytes requested and not yet freed */
};

static inline void slots_init(struct slot_set *s, size_t n)
{
    s->ptr = bench_map(n * sizeof *s->ptr);
    s->size = bench_map(n * sizeof *s->size);
    s->n = n;
    s->live = 0;
}

static inline void slots_put(struct slot_set *s, size_t i, size_t size)
{
    unsigned char tag = (unsigned char)i;
    if (s->ptr[i]) {
        bench_check(s->ptr[i], s->size[i], tag);
        free(s->ptr[i]);
        s->live -= s->size[i];
    }
    void *p = xmalloc(size);
    bench_touch(p, size, tag);
    s->ptr[i] = p;
    s->size[i] = size;
    s->live += size;
}

/* Frees every block; the slot arrays stay for reuse. */
static inline void slots_clear(struct slot_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->ptr[i]);
        s->ptr[i] = NULL;
        s->size[i] = 0;
    }
    s->live = 0;
}

static inline void slots_destroy(struct slot_set *s)
{
    slots_clear(s);
    bench_unmap(s->ptr, s->n * sizeof *s->ptr);
    bench_unmap(s->size, s->n * sizeof *s->size);
}

/* Fill every slot, then replace ops random slots. */
static inline void slots_churn(struct slot_set *s, const struct size_table *t, uint64_t ops, bench_rng *r)
{
    for (size_t i = 0; i < s->n; i++)
        slots_put(s, i, size_table_pick(t, r));
    for (uint64_t k = 0; k < ops; k++)
        slots_put(s, (size_t)rng_below(r, s->n), size_table_pick(t, r));
}

/* ---- the mixed_* workloads ------------------------------------------------ */

/* Shared by mixed_small/mid/l25/large: each thread churns its own working set
 * of `slots` blocks with sizes log-uniform in [lo, hi]; the op count is split
 * across the threads so the total work does not depend on the thread count. */
struct mixed_spec {
    const char *name;
    size_t lo, hi;     /* request sizes, bytes */
    size_t slots;      /* working set per thread */
    uint64_t full_ops; /* replacements at scale 1.0 */
};

struct mixed_worker {
    const struct size_table *sizes;
    struct slot_set set;
    uint64_t ops;
    int index;
};

static inline void *mixed_worker_run(void *arg)
{
    struct mixed_worker *w = arg;
    bench_rng r;
    rng_seed(&r, (uint64_t)w->index + 1);
    slots_churn(&w->set, w->sizes, w->ops, &r);
    return NULL;
}

static inline int mixed_main(const struct mixed_spec *spec, int argc, char **argv)
{
    struct bench_args a = bench_parse(argc, argv);
    uint64_t ops = bench_ops(&a, spec->full_ops);
    struct size_table *sizes = bench_map(sizeof *sizes);
    size_table_log_uniform(sizes, spec->lo, spec->hi, 7);

    int n = a.threads;
    struct mixed_worker *w = bench_map((size_t)n * sizeof *w);
    pthread_t *tids = bench_map((size_t)n * sizeof *tids);
    for (int i = 0; i < n; i++) {
        w[i].sizes = sizes;
        w[i].ops = ops / (uint64_t)n + ((uint64_t)i < ops % (uint64_t)n);
        w[i].index = i;
        slots_init(&w[i].set, spec->slots);
    }

    double t0 = bench_now();
    if (n == 1) {
        /* No thread at all: the allocator sees a single-threaded program
         * (glibc, for one, then skips its arena locks). */
        mixed_worker_run(&w[0]);
    } else {
        bench_spawn(tids, n, mixed_worker_run, w, sizeof *w);
        bench_join(tids, n);
    }
    double seconds = bench_now() - t0;

    uint64_t live = 0;
    for (int i = 0; i < n; i++)
        live += w[i].set.live;
    long end_rss = bench_rss_kb();
    char extra[64];
    snprintf(extra, sizeof extra, " ns_per_op=%.1f", seconds * 1e9 / (double)(ops ? ops : 1));
    bench_result(spec->name, n, seconds, ops, end_rss, live, extra);

    /* Blocks of exited threads are freed here, on purpose: an allocator that
     * mishandles orphaned thread memory should fail visibly. */
    for (int i = 0; i < n; i++)
        slots_destroy(&w[i].set);
    return 0;
}

#endif
