/* api_sizes — many sizes and alignments: every result is owned by hakmem,
 * aligned as promised, at least as large as asked, writable over its whole
 * usable size, and does not overlap any other live block. */
#include "check.h"

/* The alignment malloc owes a request of n bytes: 16 (max_align_t) from 16
 * up, below that the largest power of two not above n (an object of size n
 * cannot need more). */
static size_t min_align_for(size_t n)
{
    if (n >= 16)
        return 16;
    size_t a = 1;
    while (a * 2 <= n)
        a *= 2;
    return a;
}

struct block {
    unsigned char *p;
    size_t n, usable;
    uint64_t seed;
};

/* Fill a live block over its whole usable size with its own pattern. */
static void take(struct block *b, void *p, size_t n, size_t align, const char *how, uint64_t seed)
{
    REQUIRE(p != NULL, "%s for %zu bytes (alignment %zu) returned NULL: %s", how, n, align, strerror(errno));
    CHECK_OWNS(p);
    CHECK(IS_ALIGNED(p, align), "%s(%zu) = %p is not %zu-byte aligned", how, n, p, align);
    b->p = p;
    b->n = n;
    b->usable = malloc_usable_size(p);
    b->seed = seed;
    CHECK(b->usable >= n, "%s(%zu): malloc_usable_size %zu < request", how, n, b->usable);
    fill_pattern(b->p, b->usable, seed);
}

/* Check a block still holds its pattern (nobody else wrote into it), free it. */
static void release(struct block *b, const char *how)
{
    long bad = check_pattern(b->p, b->usable, b->seed);
    CHECK(bad < 0, "%s block %p of %zu bytes (usable %zu) was overwritten at offset %ld: overlap?", how, (void *)b->p,
          b->n, b->usable, bad);
    free(b->p);
}

/* Every size 1..4096, all live at once, twice (the second round reuses). */
static void t_every_small_size(void)
{
    enum { N = 4096 };
    static struct block blocks[N + 1];
    for (int round = 0; round < 2; round++) {
        for (size_t n = 1; n <= N; n++)
            take(&blocks[n], malloc(n), n, min_align_for(n), "malloc", n * 1000 + (size_t)round);
        /* Free odd sizes first, then even: frees interleave with live blocks. */
        for (size_t n = 1; n <= N; n += 2)
            release(&blocks[n], "malloc");
        for (size_t n = 2; n <= N; n += 2)
            release(&blocks[n], "malloc");
    }
}

/* Powers of two and their neighbours, 1 B .. 64 MiB. */
static void t_powers_of_two(void)
{
    static struct block live[3 * 27];
    size_t nlive = 0;
    for (int k = 0; k <= 26; k++) {
        size_t base = (size_t)1 << k;
        size_t sizes[3] = {base - 1, base, base + 1};
        for (int j = 0; j < 3; j++) {
            size_t n = sizes[j];
            if (n == 0)
                continue;
            struct block b;
            take(&b, malloc(n), n, min_align_for(n), "malloc", n);
            /* Keep up to 1 MiB live to catch overlaps; bigger ones go now. */
            if (n <= MiB)
                live[nlive++] = b;
            else
                release(&b, "malloc");
        }
    }
    for (size_t i = 0; i < nlive; i++)
        release(&live[i], "malloc");
}

enum aligned_api { USE_POSIX_MEMALIGN, USE_ALIGNED_ALLOC, USE_MEMALIGN };

static void *aligned_get(enum aligned_api api, size_t align, size_t n)
{
    void *p = NULL;
    switch (api) {
    case USE_POSIX_MEMALIGN: {
        int rc = posix_memalign(&p, align, n);
        CHECK(rc == 0, "posix_memalign(%zu, %zu) returned %d", align, n, rc);
        return rc == 0 ? p : NULL;
    }
    case USE_ALIGNED_ALLOC: return aligned_alloc(align, n);
    case USE_MEMALIGN: return memalign(align, n);
    }
    return NULL;
}

/* Every power-of-two alignment up to 4 MiB with several sizes each, all
 * sizes of one alignment live at once. */
static void aligned_sweep(enum aligned_api api, const char *how)
{
    /* posix_memalign requires a multiple of sizeof(void *). */
    size_t first = api == USE_POSIX_MEMALIGN ? sizeof(void *) : 1;
    for (size_t align = first; align <= 4 * MiB; align *= 2) {
        size_t sizes[] = {1, 8, 16, 100, 5000, align > 1 ? align - 1 : 2, align, align + 1, 2 * align + 16};
        enum { NS = sizeof sizes / sizeof sizes[0] };
        struct block b[NS];
        for (size_t i = 0; i < NS; i++)
            take(&b[i], aligned_get(api, align, sizes[i]), sizes[i], align, how, align * 31 + sizes[i]);
        for (size_t i = 0; i < NS; i++)
            release(&b[i], how);
    }
}

static void t_align_posix_memalign(void)
{
    aligned_sweep(USE_POSIX_MEMALIGN, "posix_memalign");
}

static void t_align_aligned_alloc(void)
{
    aligned_sweep(USE_ALIGNED_ALLOC, "aligned_alloc");
}

static void t_align_memalign(void)
{
    aligned_sweep(USE_MEMALIGN, "memalign");
}

/* Aligned and plain blocks interleaved, so that aligned allocations carved
 * out of the same spans as plain ones are exercised too. */
static void t_align_mixed(void)
{
    enum { N = 2000 };
    static struct block b[N];
    uint64_t rng = 12345;
    for (int i = 0; i < N; i++) {
        size_t n = 1 + rng_next(&rng) % 3000;
        if (i % 3 == 0) {
            size_t align = (size_t)1 << (rng_next(&rng) % 13);
            take(&b[i], memalign(align, n), n, align, "memalign", (uint64_t)i);
        } else {
            take(&b[i], malloc(n), n, min_align_for(n), "malloc", (uint64_t)i);
        }
    }
    for (int i = 0; i < N; i++)
        release(&b[i], "mixed");
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"every_small_size", t_every_small_size},
        {"powers_of_two", t_powers_of_two},
        {"align_posix_memalign", t_align_posix_memalign},
        {"align_aligned_alloc", t_align_aligned_alloc},
        {"align_memalign", t_align_memalign},
        {"align_mixed", t_align_mixed},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
