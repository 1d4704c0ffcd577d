/* The Mid (1-32 KiB) and L25 (32 KiB - 1 MiB) pools, memory return and the
 * RSS budget (tests/test_pools.py runs each subtest, some with HAKMEM_*
 * settings of their own):
 *   boundaries   every Mid and L25 class boundary: tier, usable size,
 *                alignment, contents, in-place realloc within the usable
 *                size and within the class, a shrink past both moves
 *   l25_reuse    random L25 churn reuses its chunks (coalescing spans) and
 *                keeps its free resident pages within its allowance
 *   l25_pages    an L25 block is its length in whole pages, not its class's
 *                size; realloc grows a block into the free pages after it
 *                and moves one whose neighbour is live, contents kept; the
 *                pool's counters come back to where they were
 *   l25_grow     (HAKMEM_WMAX_LARGE=4096) realloc grows a block into the
 *                resident pages of a freed neighbour, to its class's size
 *                or to all the neighbour has, and moves when that is short
 *   ring         frees of another thread's Mid blocks go back in batches
 *                (HAKMEM_POOL_TLS_RING) and the owner takes them back
 *   cap_large    HAKMEM_CAP_LARGE=8: the ninth L25 block is a Large one
 *   cap_mid_off  HAKMEM_CAP_MID=0: Mid sizes are served by the Large tier
 *   budget_low   a budget under the live data: reported, allocation goes on
 *   budget_trims a budget over the live data: resident memory kept under it
 *   idle_purge   freed memory leaves RSS after the decay time, at the next
 *                call (HAKMEM_TINY_DECAY_MS=200)
 *   idle_quiet   ... with no call at all: the decay thread purges it
 *   trim         malloc_trim(0) returns it at once
 *   idle_thread  a thread that stops calling the allocator: the decay thread
 *                hands its L25 cache and magazines back (with
 *                HAKMEM_DECAY_THREAD=0 they stay), and the thread's next
 *                calls work on; threads that pause and resume around the
 *                decay ticks meanwhile keep their data intact
 *   idle_mid     a thread asleep with blocks of four Mid classes in its SLLs:
 *                the decay thread cuts them to their first block, and the
 *                pages of the slabs that emptied leave RSS (mincore; with
 *                HAKMEM_DECAY_THREAD=0 they stay); the thread's next calls,
 *                past its SLL limits, work on, contents checked; threads
 *                that pause and resume around the cuts keep their data
 *   idle_packed  the oldest 1 % of a Tiny class's blocks kept, the rest
 *                freed, the thread asleep: the pages of the survivors' slab
 *                that hold none of them leave RSS (with
 *                HAKMEM_DECAY_THREAD=0 they stay), survivors intact
 *   scavenge     freeing 90 % of a class's blocks at random purges the pages
 *                of its slabs left holding only free blocks, the 10 % keep
 *                their contents, and the purged blocks come back, once
 *                each, when the class grows again; a Tiny class does it
 *                after shrinking by 128 KiB; malloc_trim scavenges a Mid
 *                class that shrank too little to do it by itself
 *   leak         leaks ~60 MiB, for HAKMEM_PROF (tests/test_observe.py)
 *   knobs        counters of a fixed workload, compared across settings
 *   tier_rss     the per-tier resident estimate (mapped - purged, what the
 *                os_* probes add up to) against the measured RSS growth
 *   slab_reuse   a slab that 1 KiB blocks filled, carved again while still
 *                resident for 24 KiB blocks that reach less of it:
 *                malloc_trim purges the pages past their reach while one
 *                is live (its contents kept), and once it goes back too,
 *                leaves no page of the slab resident (mincore) */
#include "check.h"
#include "hk_api.h"

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KiB ((size_t)1024)

/* The pools' size classes: four per doubling. */
static size_t class_ceiling(size_t size)
{
    size_t s = size - 1;
    unsigned msb = 63u - (unsigned)__builtin_clzll(s);
    size_t quarter = (size_t)1 << (msb - 2);
    return (s / quarter + 1) * quarter;
}

static size_t resident_estimate(const struct hakmem_stats *s)
{
    size_t total = 0;
    for (int t = 0; t < 5; t++)
        total += s->tier_mapped[t] > s->tier_purged[t] ? s->tier_mapped[t] - s->tier_purged[t] : 0;
    return total;
}

static void check_block(size_t size)
{
    char *p = malloc(size);
    REQUIRE(p, "malloc(%zu)", size);
    fill_pattern(p, size, size);
    if (hk_have_api()) {
        int want = size <= 1024         ? HAKMEM_TIER_TINY
                   : size <= 32 * KiB   ? HAKMEM_TIER_MID
                   : size <= 1024 * KiB ? HAKMEM_TIER_L25
                                        : HAKMEM_TIER_LARGE;
        CHECK(hk_tier(p) == want, "%zu bytes: tier %s, want %s", size, hk_tier_name(hk_tier(p)), hk_tier_name(want));
        size_t usable = malloc_usable_size(p);
        if (size > 1024 && size <= 32 * KiB)
            CHECK(usable == class_ceiling(size), "%zu bytes: usable %zu, class %zu", size, usable, class_ceiling(size));
        if (size > 32 * KiB && size <= 1024 * KiB) {
            /* Whole pages; a cached block at most an eighth over them, or
             * of the class's full size. */
            size_t pages = (size + 4095) / 4096;
            CHECK(usable % 4096 == 0 && usable >= pages * 4096 &&
                      (usable / 4096 <= pages + pages / 8 || usable == class_ceiling(size)),
                  "%zu bytes: usable %zu", size, usable);
            CHECK_ALIGNED(p, 4096);
            /* Within its usable size, realloc keeps the block. */
            char *q = realloc(p, usable);
            CHECK(q == p, "realloc(%zu -> %zu) within the usable size moved the block", size, usable);
            p = q;
        }
    }
    CHECK_ALIGNED(p, 16);
    CHECK(check_pattern(p, size, size) == -1, "%zu bytes: contents changed", size);
    free(p);
}

/* An L25 block of its class's full size (what realloc grows to) stays
 * for a smaller request of the class, though more than an eighth over
 * it, and moves for one below the class that it exceeds by more. */
static void check_l25_class_realloc(size_t top)
{
    size_t quarter = (size_t)1 << (62u - (unsigned)__builtin_clzll(top - 1) - 1u);
    size_t low = top - quarter + 1, below = (top - quarter) * 3 / 4;
    size_t low_pages = (low + 4095) / 4096, below_pages = (below + 4095) / 4096;
    char *p = malloc(top);
    REQUIRE(p, "malloc(%zu)", top);
    if (malloc_usable_size(p) != top || top / 4096 <= low_pages + low_pages / 8) {
        free(p);
        return;
    }
    fill_pattern(p, low, top);
    char *q = realloc(p, low);
    CHECK(q == p, "realloc(%zu -> %zu) within the class moved the block", top, low);
    p = q;
    if (below > 32 * KiB && top / 4096 > below_pages + below_pages / 8) {
        q = realloc(p, below);
        REQUIRE(q, "realloc(%zu)", below);
        CHECK(q != p, "realloc(%zu -> %zu), below the class, kept the block", low, below);
        p = q;
    }
    CHECK(check_pattern(p, below < low ? below : low, top) == -1, "%zu-byte block: contents changed", top);
    free(p);
}

static void t_boundaries(void)
{
    for (size_t c = 1280; c <= 1024 * KiB; c = class_ceiling(c + 1)) {
        check_block(c - 1);
        check_block(c);
        check_block(c + 1);
    }
    check_block(1025);
    check_block(32 * KiB + 1);
    check_block(1024 * KiB + 1);
    if (hk_have_api())
        for (size_t c = 40 * KiB; c <= 1024 * KiB; c = class_ceiling(c + 1))
            check_l25_class_realloc(c);
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void t_l25_reuse(void)
{
    enum { LIVE = 64 };
    void *live[LIVE] = {0};
    size_t sizes[LIVE] = {0};
    for (int i = 0; i < 20000; i++) {
        int k = (int)(rng() % LIVE);
        if (live[k]) {
            CHECK(check_pattern(live[k], 64, sizes[k]) == -1, "L25 block %d overwritten", k);
            free(live[k]);
        }
        sizes[k] = 32 * KiB + 1 + rng() % (992 * KiB);
        live[k] = malloc(sizes[k]);
        REQUIRE(live[k], "malloc(%zu)", sizes[k]);
        fill_pattern(live[k], 64, sizes[k]);
    }
    struct hakmem_stats s = hk_stats();
    /* 64 blocks of at most 1 MiB live: the chunks serving them are reused,
     * not one per allocation (live bytes average 33 MiB, 2 MiB chunks). */
    if (hk_have_api())
        CHECK(s.l25_chunks <= 64, "%llu L25 chunks for 64 live blocks", (unsigned long long)s.l25_chunks);
    /* All but 8 freed (some 28 MiB): the pool keeps at most its allowance
     * of them resident, 2 MiB + 1.5x its live bytes (the 8 left and the
     * thread's cache), with 1 MiB of slack; the decay takes the rest later. */
    for (int k = 8; k < LIVE; k++)
        free(live[k]);
    s = hk_stats();
    size_t allowed = 2 * MiB + s.l25_live_bytes + s.l25_live_bytes / 2;
    printf("l25_reuse after freeing 56: live=%llu KiB free_resident=%llu KiB allowance=%zu KiB\n",
           (unsigned long long)(s.l25_live_bytes / KiB), (unsigned long long)(s.l25_free_resident / KiB),
           allowed / KiB);
    if (hk_have_api())
        CHECK(s.l25_free_resident <= allowed + MiB, "L25 free resident %llu KiB over its allowance %zu KiB",
              (unsigned long long)(s.l25_free_resident / KiB), allowed / KiB);
    for (int k = 0; k < 8; k++)
        free(live[k]);
}

static size_t page_round(size_t n)
{
    return (n + 4095) / 4096 * 4096;
}

static size_t l25_resident(const struct hakmem_stats *s)
{
    return s->tier_mapped[3] - s->tier_purged[3];
}

static void t_l25_pages(void)
{
    /* Run after other subtests in one process, their cached and free spans
     * would be in the way: a fresh chunk. */
    malloc_trim(0);
    struct hakmem_stats s0 = hk_stats();
    /* Two classes: a second miss of one class in a row would bring extra
     * blocks for the thread's cache, right after the second block. */
    size_t a_size = 33 * KiB + 1, b_size = 50 * KiB;
    char *a = malloc(a_size), *b = malloc(b_size);
    REQUIRE(a && b, "malloc");
    fill_pattern(a, a_size, 1);
    fill_pattern(b, b_size, 2);
    if (hk_have_api()) {
        CHECK(malloc_usable_size(a) == 36 * KiB, "33 KiB + 1: usable %zu, want 36 KiB (9 pages)",
              malloc_usable_size(a));
        CHECK(malloc_usable_size(b) == 52 * KiB, "50 KiB: usable %zu, want 52 KiB (13 pages)", malloc_usable_size(b));
        /* A fresh chunk hands out its pages in order. */
        CHECK(b == a + 36 * KiB, "the second block is not right after the first");
        CHECK(hk_stats().l25_live_bytes - s0.l25_live_bytes == 88 * KiB, "L25 bytes out: %llu KiB, want 88",
              (unsigned long long)((hk_stats().l25_live_bytes - s0.l25_live_bytes) / KiB));
    }
    /* The pages after b are free: it grows in place, to its new class. */
    char *b2 = realloc(b, 70 * KiB);
    REQUIRE(b2, "realloc(70 KiB)");
    CHECK(check_pattern(b2, b_size, 2) == -1, "realloc in place lost the contents");
    if (hk_have_api()) {
        CHECK(b2 == b, "realloc(50 -> 70 KiB) moved a block with free pages after it");
        CHECK(malloc_usable_size(b2) == 80 * KiB, "grown block: usable %zu, want 80 KiB", malloc_usable_size(b2));
        CHECK(hk_stats().l25_live_bytes - s0.l25_live_bytes == 116 * KiB, "L25 bytes out after the grow: %llu KiB",
              (unsigned long long)((hk_stats().l25_live_bytes - s0.l25_live_bytes) / KiB));
    }
    /* b is live right after a: a moves. */
    char *a2 = realloc(a, 50 * KiB);
    REQUIRE(a2, "realloc(50 KiB)");
    CHECK(check_pattern(a2, a_size, 1) == -1, "realloc that moved lost the contents");
    if (hk_have_api())
        CHECK(a2 != a, "realloc(33 -> 50 KiB) did not move a block whose neighbour is live");
    /* Neither block overlaps the other. */
    fill_pattern(a2, malloc_usable_size(a2), 3);
    fill_pattern(b2, malloc_usable_size(b2), 4);
    CHECK(check_pattern(a2, malloc_usable_size(a2), 3) == -1, "blocks overlap");
    CHECK(check_pattern(b2, malloc_usable_size(b2), 4) == -1, "blocks overlap");
    free(a2);
    free(b2);
    malloc_trim(0);
    if (hk_have_api()) {
        struct hakmem_stats s1 = hk_stats();
        CHECK(s1.l25_live_bytes == s0.l25_live_bytes && s1.l25_chunks == s0.l25_chunks &&
                  s1.l25_free_resident == s0.l25_free_resident && l25_resident(&s1) == l25_resident(&s0),
              "after free and malloc_trim: %llu KiB out, %llu chunks, %llu KiB free resident, %zu KiB resident "
              "(before: %llu, %llu, %llu, %zu)",
              (unsigned long long)(s1.l25_live_bytes / KiB), (unsigned long long)s1.l25_chunks,
              (unsigned long long)(s1.l25_free_resident / KiB), l25_resident(&s1) / KiB,
              (unsigned long long)(s0.l25_live_bytes / KiB), (unsigned long long)s0.l25_chunks,
              (unsigned long long)(s0.l25_free_resident / KiB), l25_resident(&s0) / KiB);
    }
}

/* Three blocks in a row of a fresh chunk, none cached (HAKMEM_WMAX_LARGE is
 * one page): the middle one freed leaves a span with resident pages. */
static char *l25_row(char **x, char **z, size_t x_size, size_t y_size)
{
    malloc_trim(0);
    *x = malloc(x_size);
    char *y = malloc(y_size);
    *z = malloc(40 * KiB);
    REQUIRE(*x && y && *z, "malloc");
    fill_pattern(*x, x_size, 5);
    memset(y, 0x5a, y_size);
    fill_pattern(*z, 40 * KiB, 6);
    if (hk_have_api())
        CHECK(y == *x + page_round(x_size) && *z == y + page_round(y_size), "blocks not in a row");
    free(y);
    return y;
}

static void t_l25_grow(void)
{
    REQUIRE(getenv("HAKMEM_WMAX_LARGE"), "run with HAKMEM_WMAX_LARGE=4096 (no L25 thread cache)");
    char *x, *z;
    /* Into resident free pages: 10 pages grow to 16 (64 KiB), 6 of the 10
     * free after them taken, 4 left free and resident. */
    l25_row(&x, &z, 40 * KiB, 40 * KiB);
    struct hakmem_stats s0 = hk_stats();
    char *x2 = realloc(x, 60 * KiB);
    REQUIRE(x2, "realloc(60 KiB)");
    CHECK(check_pattern(x2, 40 * KiB, 5) == -1, "realloc lost the contents");
    if (hk_have_api()) {
        struct hakmem_stats s1 = hk_stats();
        CHECK(x2 == x && malloc_usable_size(x2) == 64 * KiB, "grew to %zu KiB at %s place",
              malloc_usable_size(x2) / KiB, x2 == x ? "the same" : "another");
        CHECK(s0.l25_free_resident - s1.l25_free_resident == 24 * KiB,
              "free resident L25 bytes fell by %lld KiB, want 24 (6 pages taken)",
              (long long)(s0.l25_free_resident - s1.l25_free_resident) / 1024);
        CHECK(l25_resident(&s1) == l25_resident(&s0), "resident estimate moved by taking resident pages");
    }
    fill_pattern(x2, 60 * KiB, 7);
    CHECK(check_pattern(z, 40 * KiB, 6) == -1, "the grown block ran into the next one");
    free(x2);
    free(z);

    /* The free span is long enough for the request, not for its class: all
     * of it (21 pages of the 24 of 96 KiB). */
    l25_row(&x, &z, 40 * KiB, 44 * KiB);
    x2 = realloc(x, 84 * KiB);
    REQUIRE(x2, "realloc(84 KiB)");
    CHECK(check_pattern(x2, 40 * KiB, 5) == -1, "realloc lost the contents");
    if (hk_have_api())
        CHECK(x2 == x && malloc_usable_size(x2) == 84 * KiB, "grew to %zu KiB at %s place",
              malloc_usable_size(x2) / KiB, x2 == x ? "the same" : "another");
    fill_pattern(x2, 84 * KiB, 7);
    CHECK(check_pattern(z, 40 * KiB, 6) == -1, "the grown block ran into the next one");
    free(x2);
    free(z);

    /* Too short: 10 + 9 pages for a request of 21 moves. */
    l25_row(&x, &z, 40 * KiB, 36 * KiB);
    x2 = realloc(x, 80 * KiB + 1);
    REQUIRE(x2, "realloc(80 KiB + 1)");
    CHECK(check_pattern(x2, 40 * KiB, 5) == -1, "realloc lost the contents");
    if (hk_have_api())
        CHECK(x2 != x, "realloc grew a block past a live neighbour");
    CHECK(check_pattern(z, 40 * KiB, 6) == -1, "the next block was overwritten");
    free(x2);
    free(z);
}

enum { RING_BLOCKS = 4096 };
static void *ring_blocks[RING_BLOCKS];

static void *free_them(void *arg)
{
    (void)arg;
    for (int i = 0; i < RING_BLOCKS; i++)
        free(ring_blocks[i]);
    return NULL;
}

static void t_ring(void)
{
    for (int i = 0; i < RING_BLOCKS; i++) {
        ring_blocks[i] = malloc(2000);
        REQUIRE(ring_blocks[i], "malloc");
        memset(ring_blocks[i], 7, 2000);
    }
    struct hakmem_stats before = hk_stats();
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, free_them, NULL) == 0, "pthread_create");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join");
    /* The owner takes the blocks back as it allocates again. */
    for (int i = 0; i < RING_BLOCKS; i++)
        ring_blocks[i] = malloc(2000);
    struct hakmem_stats after = hk_stats();
    for (int i = 0; i < RING_BLOCKS; i++)
        free(ring_blocks[i]);
    unsigned long long flushes = after.mid_ring_flushes - before.mid_ring_flushes;
    unsigned long long drained = after.tiny_remote_drained - before.tiny_remote_drained;
    printf("ring flushes=%llu drained=%llu\n", flushes, drained);
    if (hk_have_api())
        CHECK(drained >= RING_BLOCKS / 2, "the owner took back %llu of %d remote frees", drained, RING_BLOCKS);
}

static void t_cap_large(void)
{
    void *blocks[12];
    struct hakmem_stats before = hk_stats();
    for (int i = 0; i < 12; i++) {
        blocks[i] = malloc(100 * KiB);
        REQUIRE(blocks[i], "malloc");
        memset(blocks[i], i, 100 * KiB);
        if (hk_have_api())
            CHECK(hk_tier(blocks[i]) == (i < 8 ? HAKMEM_TIER_L25 : HAKMEM_TIER_LARGE), "block %d: tier %s", i,
                  hk_tier_name(hk_tier(blocks[i])));
    }
    struct hakmem_stats after = hk_stats();
    if (hk_have_api())
        CHECK(after.l25_fallbacks - before.l25_fallbacks == 4, "%llu L25 fallbacks, want 4",
              (unsigned long long)(after.l25_fallbacks - before.l25_fallbacks));
    for (int i = 0; i < 12; i++)
        free(blocks[i]);
}

static void t_cap_mid_off(void)
{
    void *p = malloc(3000);
    REQUIRE(p, "malloc");
    memset(p, 1, 3000);
    if (hk_have_api()) {
        CHECK(hk_tier(p) == HAKMEM_TIER_LARGE, "3000 B with HAKMEM_CAP_MID=0: tier %s", hk_tier_name(hk_tier(p)));
        CHECK(hk_stats().mid_fallbacks >= 1, "no Mid fallback counted");
    }
    free(p);
}

/* Live blocks of 64 B - 256 KiB adding up to `bytes`, with contents. */
static void **hold(size_t bytes, size_t *count)
{
    size_t n = 0, cap = 1 << 16, total = 0;
    void **v = malloc(cap * sizeof *v);
    REQUIRE(v, "malloc");
    while (total < bytes && n < cap) {
        size_t size = (size_t)64 << (rng() % 13);
        v[n] = malloc(size);
        REQUIRE(v[n], "malloc(%zu) under the budget", size);
        fill_pattern(v[n], size < 256 ? size : 256, n);
        total += size;
        n++;
    }
    *count = n;
    return v;
}

static void release(void **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void churn(int rounds)
{
    for (int r = 0; r < rounds; r++) {
        void *tmp[64];
        for (int i = 0; i < 64; i++)
            tmp[i] = malloc((size_t)64 << (rng() % 13));
        for (int i = 0; i < 64; i++)
            free(tmp[i]);
        if (r % 16 == 0)
            usleep(1000);
    }
}

static void t_budget_low(void)
{
    size_t n;
    void **v = hold(32 * MiB, &n);
    struct hakmem_stats s = hk_stats();
    /* Diet steps every 10 ms at most until the caches reach their floors:
     * up to a few hundred milliseconds of allocation. */
    for (int round = 0; round < 300 && hk_have_api() && s.budget_exceeded == 0; round++) {
        churn(64);
        s = hk_stats();
    }
    if (hk_have_api())
        CHECK(s.budget_exceeded > 0, "32 MiB live under a 4 MiB budget: never reported (%llu diet steps)",
              (unsigned long long)s.diet_steps);
    for (size_t i = 0; i < n; i++) /* the live data is intact */
        CHECK(check_pattern(v[i], 64, i) == -1, "block %zu changed under the budget", i);
    release(v, n);
    printf("budget_low exceeded=%llu diet_steps=%llu\n", (unsigned long long)s.budget_exceeded,
           (unsigned long long)s.diet_steps);
}

static void t_budget_trims(void)
{
    size_t n, m;
    void **v = hold(16 * MiB, &n);
    void **w = hold(48 * MiB, &m);
    release(w, m);
    churn(3000);
    struct hakmem_stats s = hk_stats();
    size_t resident = resident_estimate(&s);
    printf("budget_trims resident=%zu diet_steps=%llu exceeded=%llu\n", resident, (unsigned long long)s.diet_steps,
           (unsigned long long)s.budget_exceeded);
    /* HAKMEM_TINY_RSS_BUDGET_KB=28672: 16 MiB live fits; what the 48 MiB
     * freed left resident was purged (one check interval of slack). */
    if (hk_have_api())
        CHECK(resident <= 32 * MiB, "resident estimate %zu MiB over a 28 MiB budget", resident / MiB);
    release(v, n);
}

static void fill_and_free(size_t bytes)
{
    size_t n;
    void **v = hold(bytes, &n);
    for (size_t i = 0; i < n; i++)
        memset(v[i], 3, malloc_usable_size(v[i]));
    release(v, n);
}

static void t_idle_purge(void)
{
    free(malloc(100));
    size_t base = rss_bytes();
    fill_and_free(64 * MiB);
    size_t freed = rss_bytes();
    usleep(400 * 1000); /* HAKMEM_TINY_DECAY_MS=200, HAKMEM_BIGCACHE_DECAY_MS=200 */
    /* One call of each pool runs the decay of every tier. */
    free(malloc(100 * KiB));
    free(malloc(100 * KiB));
    size_t after = rss_bytes();
    printf("idle_purge base=%zu freed=%zu after=%zu\n", base / KiB, freed / KiB, after / KiB);
    CHECK(after <= base + 12 * MiB, "RSS %zu MiB after the decay time, %zu MiB before the workload", after / MiB,
          base / MiB);
}

/* The decay thread runs unless HAKMEM_DECAY_THREAD=0. */
static bool decay_thread_on(void)
{
    const char *v = getenv("HAKMEM_DECAY_THREAD");
    return !v || strcmp(v, "0") != 0;
}

/* No allocation call after the frees: only the decay thread can purge. */
static void t_idle_quiet(void)
{
    free(malloc(100));
    size_t base = rss_bytes();
    fill_and_free(64 * MiB);
    size_t freed = rss_bytes();
    usleep(800 * 1000); /* HAKMEM_TINY_DECAY_MS=200: the thread wakes every 100 ms */
    size_t after = rss_bytes();
    printf("idle_quiet base=%zu freed=%zu after=%zu\n", base / KiB, freed / KiB, after / KiB);
    if (!decay_thread_on())
        CHECK(after + MiB >= freed, "RSS fell from %zu to %zu KiB with no decay thread and no call", freed / KiB,
              after / KiB);
    else
        CHECK(after <= base + 12 * MiB && (after < freed || freed <= base + 12 * MiB),
              "RSS %zu MiB after an idle decay time, %zu MiB before the workload", after / MiB, base / MiB);
}

static void t_trim(void)
{
    free(malloc(100));
    size_t base = rss_bytes();
    fill_and_free(64 * MiB);
    size_t freed = rss_bytes();
    malloc_trim(0);
    size_t after = rss_bytes();
    printf("trim base=%zu freed=%zu after=%zu\n", base / KiB, freed / KiB, after / KiB);
    CHECK(after <= base + 8 * MiB, "RSS %zu MiB after malloc_trim, %zu MiB before the workload", after / MiB,
          base / MiB);
    if (hk_have_api())
        CHECK(hk_stats().l25_free_resident == 0, "L25 free pages still resident after malloc_trim");
}

/* idle_thread: the worker fills its caches, reports, sleeps, then checks
 * that its allocations still work. */
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;
static int idle_stage;

static void idle_wait_stage(int stage)
{
    pthread_mutex_lock(&idle_mu);
    while (idle_stage < stage)
        pthread_cond_wait(&idle_cv, &idle_mu);
    pthread_mutex_unlock(&idle_mu);
}

static void idle_set_stage(int stage)
{
    pthread_mutex_lock(&idle_mu);
    idle_stage = stage;
    pthread_cond_broadcast(&idle_cv);
    pthread_mutex_unlock(&idle_mu);
}

/* Blocks of `size` (n of them), written, checked, freed: the frees fill
 * the thread's cache of that class. */
static void cycle_blocks(size_t size, int n, uint64_t seed)
{
    char *v[64];
    for (int i = 0; i < n; i++) {
        v[i] = malloc(size);
        REQUIRE(v[i], "malloc(%zu)", size);
        fill_pattern(v[i], size, seed + (uint64_t)i);
    }
    for (int i = 0; i < n; i++) {
        CHECK(check_pattern(v[i], size, seed + (uint64_t)i) == -1, "%zu-byte block %d changed", size, i);
        free(v[i]);
    }
}

static void *idle_worker(void *arg)
{
    (void)arg;
    cycle_blocks(200 * KiB, 8, 1); /* L25: ~1.6 MiB cached */
    cycle_blocks(12 * KiB, 40, 2); /* Mid: SLL then magazine */
    cycle_blocks(3 * KiB, 64, 3);
    idle_set_stage(1);
    idle_wait_stage(2); /* no allocator call meanwhile */
    cycle_blocks(200 * KiB, 8, 4);
    cycle_blocks(12 * KiB, 40, 5);
    return NULL;
}

/* Bursts of allocation separated by pauses about as long as a decay tick,
 * so that the decay thread finds the thread idle, then busy again, while
 * it reclaims: every block must come back intact. */
static void *pausing_worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 1000;
    for (int round = 0; round < 12; round++) {
        cycle_blocks(100 * KiB + (size_t)round * 4096, 6, seed + (uint64_t)round);
        cycle_blocks(6 * KiB, 48, seed + 100 + (uint64_t)round);
        usleep((useconds_t)(60 + 17 * (round % 5)) * 1000);
    }
    return NULL;
}

static void t_idle_thread(void)
{
    free(malloc(100)); /* the decay thread starts at a slow path */
    pthread_t worker;
    REQUIRE(pthread_create(&worker, NULL, idle_worker, NULL) == 0, "pthread_create");
    idle_wait_stage(1);
    bool decay_thread = decay_thread_on();
    struct hakmem_stats before = hk_stats(), after = before;
    /* Two decay ticks at least (every 100 ms with HAKMEM_TINY_DECAY_MS=200,
     * 500 ms by default): one to see the thread quiet, one to reclaim. */
    for (int waited = 0; waited < (decay_thread ? 3000 : 700); waited += 50) {
        usleep(50 * 1000);
        after = hk_stats();
        if (after.l25_live_bytes < before.l25_live_bytes)
            break;
    }
    idle_set_stage(2);
    REQUIRE(pthread_join(worker, NULL) == 0, "pthread_join");
    printf("idle_thread l25_out_before=%llu l25_out_after=%llu decay_thread=%d\n",
           (unsigned long long)before.l25_live_bytes, (unsigned long long)after.l25_live_bytes, decay_thread);
    if (hk_have_api()) {
        CHECK(before.l25_live_bytes >= MiB, "the worker's L25 cache held %llu KiB, want >= 1 MiB",
              (unsigned long long)(before.l25_live_bytes / KiB));
        if (decay_thread)
            CHECK(after.l25_live_bytes + 256 * KiB <= before.l25_live_bytes / 4,
                  "an idle thread's L25 cache kept %llu of %llu KiB for 3 s",
                  (unsigned long long)(after.l25_live_bytes / KiB), (unsigned long long)(before.l25_live_bytes / KiB));
        else
            CHECK(after.l25_live_bytes == before.l25_live_bytes,
                  "no decay thread, yet the L25 bytes out went from %llu to %llu KiB",
                  (unsigned long long)(before.l25_live_bytes / KiB), (unsigned long long)(after.l25_live_bytes / KiB));
    }
    pthread_t pausing[3];
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_create(&pausing[i], NULL, pausing_worker, (void *)(uintptr_t)(i + 1)) == 0, "pthread_create");
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_join(pausing[i], NULL) == 0, "pthread_join");
}

/* idle_mid: blocks of four Mid classes, 96 KiB of each, allocated and
 * freed by a worker that then sleeps: the SLL limit of each class is
 * 128 KiB, so all of them wait in its SLLs. */
enum { IDLE_MID_CLASSES = 4, IDLE_MID_MAX = 24 };
static const size_t idle_mid_size[IDLE_MID_CLASSES] = {4 * KiB, 8 * KiB, 16 * KiB, 32 * KiB};
static char *idle_mid_block[IDLE_MID_CLASSES][IDLE_MID_MAX];

static int idle_mid_count(int k)
{
    return (int)(96 * KiB / idle_mid_size[k]);
}

static void *idle_mid_worker(void *arg)
{
    (void)arg;
    for (int k = 0; k < IDLE_MID_CLASSES; k++) {
        size_t size = idle_mid_size[k];
        for (int i = 0; i < idle_mid_count(k); i++) {
            idle_mid_block[k][i] = malloc(size);
            REQUIRE(idle_mid_block[k][i], "malloc(%zu)", size);
            fill_pattern(idle_mid_block[k][i], size, (uint64_t)(k * 100 + i));
        }
        for (int i = 0; i < idle_mid_count(k); i++) {
            CHECK(check_pattern(idle_mid_block[k][i], size, (uint64_t)(k * 100 + i)) == -1, "%zu-byte block %d changed",
                  size, i);
            free(idle_mid_block[k][i]);
        }
    }
    idle_set_stage(1);
    idle_wait_stage(2); /* no allocator call meanwhile */
    /* Past the SLL limits (and the bins' rooms, which the thread corrects
     * for the blocks cut): refills, spills, contents kept. */
    for (int round = 0; round < 3; round++)
        for (int k = 0; k < IDLE_MID_CLASSES; k++)
            cycle_blocks(idle_mid_size[k], 64 - 8 * k, (uint64_t)(1000 + round * 100 + k));
    return NULL;
}

/* Mid bursts and pauses of one to two and a half decay ticks, so that the
 * decay thread cuts SLLs that their thread refills, frees into and pops
 * right after (or while it cuts): every block must come back intact. */
static void *idle_mid_pausing_worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 10000;
    for (int round = 0; round < 10; round++) {
        for (int k = 0; k < IDLE_MID_CLASSES; k++)
            cycle_blocks(idle_mid_size[k], 24 + 8 * k, seed + (uint64_t)(round * 10 + k));
        usleep((useconds_t)(90 + 37 * ((round + (int)(uintptr_t)arg) % 5)) * 1000);
    }
    return NULL;
}

static size_t resident_pages(uintptr_t start, size_t bytes)
{
    unsigned char vec[64];
    size_t pages = bytes / 4096, resident = 0;
    REQUIRE(pages <= sizeof vec, "%zu pages", pages);
    REQUIRE(mincore((void *)start, bytes, vec) == 0, "mincore");
    for (size_t i = 0; i < pages; i++)
        resident += vec[i] & 1;
    return resident;
}

/* Resident pages of the worker's freed blocks, less those in the slab of
 * each class's last freed block (its SLL's head, which the cut keeps);
 * `total` gets the pages looked at. */
static size_t idle_mid_resident(size_t *total)
{
    const uintptr_t slab_mask = ~(uintptr_t)(64 * KiB - 1);
    size_t resident = 0;
    *total = 0;
    for (int k = 0; k < IDLE_MID_CLASSES; k++) {
        int n = idle_mid_count(k);
        uintptr_t head_slab = (uintptr_t)idle_mid_block[k][n - 1] & slab_mask;
        for (int i = 0; i < n; i++) {
            uintptr_t b = (uintptr_t)idle_mid_block[k][i];
            if ((b & slab_mask) == head_slab)
                continue;
            resident += resident_pages(b, idle_mid_size[k]);
            *total += idle_mid_size[k] / 4096;
        }
    }
    return resident;
}

static void t_idle_mid(void)
{
    free(malloc(4 * MiB)); /* the decay thread starts at a Large allocation */
    pthread_t worker;
    REQUIRE(pthread_create(&worker, NULL, idle_mid_worker, NULL) == 0, "pthread_create");
    idle_wait_stage(1);
    bool decay_thread = decay_thread_on();
    bool ours = hk_have_api();
    size_t total = 0, before = ours ? idle_mid_resident(&total) : 0, after = before;
    /* A decay tick to see the thread quiet, one to cut: every 100 ms with
     * HAKMEM_TINY_DECAY_MS=200. */
    for (int waited = 0; ours && waited < (decay_thread ? 3000 : 700); waited += 50) {
        usleep(50 * 1000);
        after = idle_mid_resident(&total);
        if (after == 0)
            break;
    }
    idle_set_stage(2);
    REQUIRE(pthread_join(worker, NULL) == 0, "pthread_join");
    printf("idle_mid pages=%zu resident_before=%zu resident_after=%zu decay_thread=%d\n", total, before, after,
           decay_thread);
    if (ours) {
        CHECK(total >= 64, "only %zu pages outside the SLL heads' slabs", total);
        CHECK(before == total, "%zu of the %zu pages of blocks in the SLLs resident before", before, total);
        if (decay_thread)
            CHECK(after <= total / 8, "%zu of %zu pages of an idle thread's Mid SLLs still resident after 3 s", after,
                  total);
        else
            CHECK(after == before, "no decay thread, yet %zu of %zu pages left RSS", before - after, total);
    }
    pthread_t pausing[3];
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_create(&pausing[i], NULL, idle_mid_pausing_worker, (void *)(uintptr_t)(i + 1)) == 0,
                "pthread_create");
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_join(pausing[i], NULL) == 0, "pthread_join");
}

/* idle_packed: the oldest 1 % of 16 slabs' worth of 80-byte blocks kept,
 * the rest freed, then the thread sleeps. The survivors sit in the first
 * pages of their slab, a layout the scavenger's estimate (free blocks at
 * random places) rates as hopeless: the idle pass walks the slab anyway
 * and its wholly free pages leave RSS. */
static void t_idle_packed(void)
{
    enum { SIZE = 80, PER_SLAB = 64 * 1024 / SIZE, COUNT = 16 * PER_SLAB, KEEP = COUNT / 100 };
    const size_t slab_bytes = 64 * KiB;
    static char *block[COUNT];
    free(malloc(4 * MiB)); /* the decay thread starts at a Large allocation */
    for (size_t i = 0; i < COUNT; i++) {
        block[i] = malloc(SIZE);
        REQUIRE(block[i], "malloc(%d)", SIZE);
        fill_pattern(block[i], SIZE, i);
    }
    for (size_t i = KEEP; i < COUNT; i++)
        free(block[i]);
    /* The slab of the oldest survivor, and the pages the survivors in it
     * touch: the least that can stay resident. */
    uintptr_t slab = (uintptr_t)block[0] & ~(uintptr_t)(slab_bytes - 1);
    bool page_used[16] = {false};
    size_t survivors_in_slab = 0, needed = 0;
    for (size_t i = 0; i < KEEP; i++) {
        uintptr_t b = (uintptr_t)block[i];
        if ((b & ~(uintptr_t)(slab_bytes - 1)) != slab)
            continue;
        survivors_in_slab++;
        page_used[(b - slab) / 4096] = page_used[(b + SIZE - 1 - slab) / 4096] = true;
    }
    for (int i = 0; i < 16; i++)
        needed += page_used[i];
    bool ours = hk_have_api();
    bool decay_thread = decay_thread_on();
    size_t before = ours ? resident_pages(slab, slab_bytes) : 0, after = before;
    /* HAKMEM_TINY_DECAY_MS=200: a tick to see the thread quiet, one to
     * hand its caches back. Nothing here calls the allocator. */
    for (int waited = 0; ours && waited < (decay_thread ? 3000 : 700) && after > needed; waited += 50) {
        usleep(50 * 1000);
        after = resident_pages(slab, slab_bytes);
    }
    for (size_t i = 0; i < KEEP; i++)
        CHECK(check_pattern(block[i], SIZE, i) == -1, "survivor %zu changed", i);
    /* The purged blocks come back when the class grows again. */
    for (size_t i = KEEP; i < COUNT; i++) {
        block[i] = malloc(SIZE);
        REQUIRE(block[i], "malloc(%d)", SIZE);
        fill_pattern(block[i], SIZE, i);
    }
    for (size_t i = 0; i < COUNT; i++) {
        CHECK(check_pattern(block[i], SIZE, i) == -1, "block %zu changed", i);
        free(block[i]);
    }
    printf("idle_packed survivors_in_slab=%zu pages_needed=%zu resident_before=%zu resident_after=%zu\n",
           survivors_in_slab, needed, before, after);
    if (ours) {
        CHECK(survivors_in_slab >= KEEP / 2, "only %zu of %d survivors in the first one's slab", survivors_in_slab,
              KEEP);
        CHECK(before == slab_bytes / 4096, "%zu of the slab's 16 pages resident before the idle time", before);
        if (decay_thread)
            CHECK(after <= needed + 1, "%zu of the slab's 16 pages resident after 3 s idle, its survivors touch %zu",
                  after, needed);
        else
            CHECK(after == before, "no decay thread, yet %zu of 16 pages left RSS", before - after);
    }
}

/* Survivors of a random 90 % free, blocks of `size` bytes. */
struct sparse {
    char **block;
    size_t count, size;
};

static struct sparse sparse_fill(size_t size, size_t bytes)
{
    struct sparse sp = {malloc(bytes / size * sizeof(char *)), bytes / size, size};
    REQUIRE(sp.block, "malloc");
    for (size_t i = 0; i < sp.count; i++) {
        sp.block[i] = malloc(size);
        REQUIRE(sp.block[i], "malloc(%zu)", size);
        fill_pattern(sp.block[i], size, i * 7919 + size);
    }
    for (size_t i = 0; i < sp.count; i++) {
        if (rng() % 10) {
            free(sp.block[i]);
            sp.block[i] = NULL;
        }
    }
    return sp;
}

static void sparse_free(struct sparse *sp)
{
    for (size_t i = 0; i < sp->count; i++)
        free(sp->block[i]);
    free(sp->block);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* The survivors are intact; `fresh` blocks allocated since are neither
 * one of them nor one another (each a block of sp->size bytes). */
static void sparse_check(const struct sparse *sp, char **fresh, size_t nfresh)
{
    size_t n = 0;
    uintptr_t *all = malloc((sp->count + nfresh) * sizeof *all);
    REQUIRE(all, "malloc");
    for (size_t i = 0; i < sp->count; i++) {
        if (!sp->block[i])
            continue;
        CHECK(check_pattern(sp->block[i], sp->size, i * 7919 + sp->size) == -1,
              "a surviving %zu-byte block changed (offset %ld)", sp->size,
              check_pattern(sp->block[i], sp->size, i * 7919 + sp->size));
        all[n++] = (uintptr_t)sp->block[i];
    }
    for (size_t i = 0; i < nfresh; i++)
        all[n++] = (uintptr_t)fresh[i];
    qsort(all, n, sizeof *all, cmp_ptr);
    for (size_t i = 1; i < n; i++)
        CHECK(all[i] - all[i - 1] >= sp->size, "blocks %#lx and %#lx of %zu bytes overlap", (unsigned long)all[i - 1],
              (unsigned long)all[i], sp->size);
    free(all);
}

/* Bytes scavenged while sparse_fill frees 90 % of a class's blocks, or,
 * with `trim`, by the malloc_trim(0) that follows; the survivors are then
 * checked and freed. */
static uint64_t fill_and_scavenge(size_t size, size_t bytes, bool trim)
{
    uint64_t before = hk_have_api() ? hk_stats().scavenged_bytes : 0;
    struct sparse sp = sparse_fill(size, bytes);
    if (trim) {
        before = hk_have_api() ? hk_stats().scavenged_bytes : 0;
        malloc_trim(0);
    }
    uint64_t scavenged = hk_have_api() ? hk_stats().scavenged_bytes - before : 0;
    sparse_check(&sp, NULL, 0);
    sparse_free(&sp);
    return scavenged;
}

static void t_scavenge(void)
{
    static const size_t sizes[] = {512, 4096, 12 * KiB};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t size = sizes[k];
        uint64_t scav0 = hk_have_api() ? hk_stats().scavenged_bytes : 0;
        size_t rss0 = rss_bytes();
        struct sparse sp = sparse_fill(size, 24 * MiB);
        size_t rss1 = rss_bytes();
        uint64_t scavenged = hk_have_api() ? hk_stats().scavenged_bytes - scav0 : 0;
        printf("scavenge size=%zu rss_before=%zu rss_after=%zu scavenged=%llu\n", size, rss0 / KiB, rss1 / KiB,
               (unsigned long long)scavenged);
        if (hk_have_api()) {
            /* 512-byte blocks: a page of 8 is wholly free with odds 0.9^8,
             * 43 %; larger blocks are a page or more each. Five 12 KiB
             * blocks fill a slab: 59 % of the slabs empty and go back
             * whole, the scavenge takes the free pages of the rest. Without
             * it the RSS would stay near 24 MiB above where it was. */
            CHECK(scavenged >= (size == 12 * KiB ? 2 : 8) * MiB,
                  "%zu-byte blocks, 90 %% of 24 MiB freed: %llu KiB scavenged", size,
                  (unsigned long long)(scavenged / KiB));
            CHECK(rss1 <= rss0 + (size < 4096 ? 18 : 10) * MiB,
                  "%zu-byte blocks: RSS %zu MiB after freeing 90 %% of 24 MiB, %zu before", size, rss1 / MiB,
                  rss0 / MiB);
        }
        /* Grow the class again: the scavenged pages' blocks come back. */
        size_t nfresh = sp.count / 2;
        char **fresh = malloc(nfresh * sizeof *fresh);
        REQUIRE(fresh, "malloc");
        for (size_t i = 0; i < nfresh; i++) {
            fresh[i] = malloc(size);
            REQUIRE(fresh[i], "malloc(%zu) after the scavenge", size);
            memset(fresh[i], 0xa5, size);
        }
        sparse_check(&sp, fresh, nfresh);
        for (size_t i = 0; i < nfresh; i++)
            free(fresh[i]);
        free(fresh);
        sparse_free(&sp);
    }

    /* A Tiny class scavenges itself after 128 KiB: 90 % of 600 KiB of
     * 640-byte blocks freed, with no malloc_trim (a page of 6.4 blocks is
     * wholly free with odds near 0.9^7, 48 %). */
    uint64_t scavenged = fill_and_scavenge(640, 600 * KiB, false);
    printf("scavenge tiny scavenged=%llu\n", (unsigned long long)scavenged);
    if (hk_have_api())
        CHECK(scavenged >= 64 * KiB, "a Tiny class 90 %% free scavenged %llu KiB by itself",
              (unsigned long long)(scavenged / KiB));

    /* 600 KiB of 2 KiB blocks freed: under the 1 MiB a Mid class must
     * shrink by before it scavenges itself; malloc_trim does it. */
    scavenged = fill_and_scavenge(2048, 600 * KiB, true);
    printf("scavenge trim scavenged=%llu\n", (unsigned long long)scavenged);
    if (hk_have_api())
        CHECK(scavenged >= 200 * KiB, "malloc_trim scavenged %llu KiB of a class 90 %% free",
              (unsigned long long)(scavenged / KiB));
}

static void t_tier_rss(void)
{
    free(malloc(100));
    struct hakmem_stats s0 = hk_stats();
    size_t rss0 = rss_bytes();
    size_t n;
    void **v = hold(48 * MiB, &n);
    void *large[4];
    for (int i = 0; i < 4; i++) {
        large[i] = malloc(4 * MiB);
        REQUIRE(large[i], "malloc");
    }
    for (size_t i = 0; i < n; i++)
        memset(v[i], 5, malloc_usable_size(v[i]));
    for (int i = 0; i < 4; i++)
        memset(large[i], 5, 4 * MiB);
    for (size_t i = 0; i < n; i += 2) { /* half freed: some of it purged */
        free(v[i]);
        v[i] = NULL;
    }
    struct hakmem_stats s1 = hk_stats();
    size_t rss1 = rss_bytes();
    long long grew = (long long)rss1 - (long long)rss0;
    long long estimate = (long long)resident_estimate(&s1) - (long long)resident_estimate(&s0);
    printf("tier_rss rss_growth=%lld estimate_growth=%lld\n", grew, estimate);
    if (hk_have_api()) {
        long long slack = grew / 10 + 2 * (long long)MiB;
        CHECK(estimate >= grew - 2 * (long long)MiB && estimate <= grew + slack,
              "estimate grew %lld KiB, RSS %lld KiB (tolerance: -2 MiB, +10%% + 2 MiB)", estimate / 1024, grew / 1024);
    }
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    for (int i = 0; i < 4; i++)
        free(large[i]);
    /* The final state, for the probes' sums (tests/test_pools.py). */
    struct hakmem_stats s2 = hk_stats();
    printf("tier_rss final");
    for (int t = 0; t < 5; t++)
        printf(" tier%d=%llu", t, (unsigned long long)(s2.tier_mapped[t] - s2.tier_purged[t]));
    printf("\n");
}

/* Two 24 KiB blocks (and their cache-line pads) fill a 64 KiB slab to
 * 48 KiB: its last three pages are never theirs to touch. */
static void t_slab_reuse(void)
{
    enum { SMALL_COUNT = 256 }; /* four slabs of 1 KiB blocks */
    const size_t slab_bytes = 64 * KiB, big_size = 24 * KiB;
    static char *small[SMALL_COUNT];
    for (size_t i = 0; i < SMALL_COUNT; i++) {
        small[i] = malloc(1024);
        REQUIRE(small[i], "malloc(1024)");
        memset(small[i], 1, 1024);
    }
    /* small[0] stays: its SuperSlab must not be unmapped by the trim. */
    for (size_t i = 1; i < SMALL_COUNT; i++)
        free(small[i]);
    char *big = malloc(big_size);
    REQUIRE(big, "malloc(%zu)", big_size);
    memset(big, 2, big_size);
    uintptr_t slab = (uintptr_t)big & ~(uintptr_t)(slab_bytes - 1);
    bool reused = false;
    for (size_t i = 0; i < SMALL_COUNT; i++)
        reused |= ((uintptr_t)small[i] & ~(uintptr_t)(slab_bytes - 1)) == slab;
    /* glibc's blocks lie in no 64 KiB slab: its neighbourhood may not
     * even be mapped, so only hakmem's pages are counted. */
    bool ours = hk_have_api();
    size_t before = ours ? resident_pages(slab, slab_bytes) : 0;
    /* With the block still live, the trim purges the pages past its
     * class's reach. */
    malloc_trim(0);
    size_t past_reach = ours ? resident_pages(slab + 52 * KiB, 12 * KiB) : 0;
    for (size_t i = 0; i < big_size; i++)
        if (big[i] != 2) {
            CHECK(false, "the 24 KiB block changed at byte %zu after malloc_trim", i);
            break;
        }
    free(big);
    malloc_trim(0);
    size_t after = ours ? resident_pages(slab, slab_bytes) : 0;
    free(small[0]);
    printf("slab_reuse reused=%d resident_before=%zu past_reach_in_use=%zu resident_after=%zu\n", reused, before,
           past_reach, after);
    if (ours) {
        CHECK(reused, "the 24 KiB block's slab is not one the 1 KiB blocks left resident");
        CHECK(before == slab_bytes / 4096, "%zu of the slab's 16 pages resident before the trim", before);
        CHECK(past_reach == 0, "%zu of the 3 pages past the 24 KiB class's reach resident after malloc_trim",
              past_reach);
        CHECK(after == 0, "%zu of the slab's 16 pages still resident after malloc_trim", after);
    }
}

/* Counters after a fixed Mid and L25 workload, for tests/test_pools.py to
 * compare across HAKMEM_* settings. */
static void t_knobs(void)
{
    enum { N = 2000 };
    static void *blocks[N];
    struct hakmem_stats s0 = hk_stats();
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++) {
            blocks[i] = malloc(16 * KiB);
            REQUIRE(blocks[i], "malloc");
            memset(blocks[i], 1, 64);
        }
        for (int i = 0; i < N; i++)
            free(blocks[i]);
    }
    size_t peak_chunks = 0;
    for (int i = 0; i < 64; i++) {
        blocks[i] = malloc(40 * KiB);
        REQUIRE(blocks[i], "malloc");
        struct hakmem_stats s = hk_stats();
        if (s.l25_chunks > peak_chunks)
            peak_chunks = s.l25_chunks;
    }
    for (int i = 0; i < 64; i++)
        free(blocks[i]);
    struct hakmem_stats s1 = hk_stats();
    printf("knobs mid_refills=%llu mid_spills=%llu l25_refills=%llu l25_chunks=%zu\n",
           (unsigned long long)(s1.mid_refills - s0.mid_refills), (unsigned long long)(s1.mid_spills - s0.mid_spills),
           (unsigned long long)(s1.l25_refills - s0.l25_refills), peak_chunks);
}

/* A program that leaks: 10 % of 200 000 small and mid blocks (about 31 MiB)
 * and half of 300 L25 blocks (about 29 MiB) are never freed. Prints the
 * bytes it leaked, for HAKMEM_PROF's estimate to be compared with. */
static void t_leak(void)
{
    size_t leaked = 0;
    for (int i = 0; i < 200000; i++) {
        size_t size = 100 + (size_t)i % 3000;
        char *p = malloc(size);
        REQUIRE(p, "malloc");
        p[0] = 1;
        if (i % 10 == 0) {
            leaked += size;
            continue;
        }
        free(p);
    }
    for (int i = 0; i < 300; i++) {
        char *p = malloc(200000);
        REQUIRE(p, "malloc");
        p[0] = 1;
        if (i % 2) {
            leaked += 200000;
            continue;
        }
        free(p);
    }
    printf("leak leaked_bytes=%zu\n", leaked);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"boundaries", t_boundaries},
        {"l25_reuse", t_l25_reuse},
        {"l25_pages", t_l25_pages},
        {"l25_grow", t_l25_grow},
        {"ring", t_ring},
        {"cap_large", t_cap_large},
        {"cap_mid_off", t_cap_mid_off},
        {"budget_low", t_budget_low},
        {"budget_trims", t_budget_trims},
        {"idle_purge", t_idle_purge},
        {"idle_quiet", t_idle_quiet},
        {"trim", t_trim},
        {"scavenge", t_scavenge},
        {"idle_thread", t_idle_thread},
        {"idle_mid", t_idle_mid},
        {"idle_packed", t_idle_packed},
        {"tier_rss", t_tier_rss},
        {"slab_reuse", t_slab_reuse},
        {"knobs", t_knobs},
        {"leak", t_leak},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
