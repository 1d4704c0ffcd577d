/* api_contents — what is in the memory: calloc is zero even when it reuses
 * a dirty block, realloc keeps contents growing and shrinking across every
 * tier boundary. */
#include "check.h"

/* Tier boundaries of hakmem.h (tiny ≤ 1 KiB < mid ≤ 32 KiB < L2.5 ≤ ~1 MiB <
 * large) and their neighbours, up to 64 MiB. */
static const size_t tier_sizes[] = {
    1, 8, 16, 17, 100, 1024, 1025, 4096, 32768, 32769, 65536, 1 << 20, (1 << 20) + 1, 4 << 20, 64 << 20,
};
enum { NTIER = sizeof tier_sizes / sizeof tier_sizes[0] };

static void dirty_and_free(size_t n)
{
    unsigned char *p = malloc(n);
    REQUIRE(p, "malloc(%zu) failed", n);
    memset(p, 0xAA, malloc_usable_size(p));
    free(p);
}

static void check_zero(const unsigned char *p, size_t n, const char *how)
{
    REQUIRE(p, "%s for %zu bytes returned NULL", how, n);
    CHECK_OWNS(p);
    long bad = find_not_byte(p, n, 0);
    CHECK(bad < 0, "%s(%zu): byte %ld is %#x, not 0 (reused a dirty block without zeroing?)", how, n, bad,
          bad >= 0 ? p[bad] : 0);
}

/* All sizes 1..4096: fill blocks with 0xAA, free them, calloc the same sizes. */
static void t_calloc_reuse_small(void)
{
    enum { N = 4096 };
    static unsigned char *blocks[N + 1];
    for (int round = 0; round < 3; round++) {
        /* Batch: everything dirty and freed, then calloc'ed back. */
        for (size_t n = 1; n <= N; n++) {
            blocks[n] = malloc(n);
            REQUIRE(blocks[n], "malloc(%zu) failed", n);
            memset(blocks[n], 0xAA, malloc_usable_size(blocks[n]));
        }
        for (size_t n = 1; n <= N; n++)
            free(blocks[n]);
        for (size_t n = N; n >= 1; n--) {
            /* Vary nmemb x size so that the product is what matters. */
            blocks[n] = round == 1 && n % 4 == 0 ? calloc(n / 4, 4) : calloc(1, n);
            check_zero(blocks[n], n, "calloc");
        }
        for (size_t n = 1; n <= N; n++)
            free(blocks[n]);
        /* One at a time: the block just freed is the likeliest to come back. */
        for (size_t n = 1; n <= N; n++) {
            dirty_and_free(n);
            unsigned char *p = calloc(n, 1);
            check_zero(p, n, "calloc");
            free(p);
        }
    }
}

static void t_calloc_reuse_large(void)
{
    static const size_t sizes[] = {32769,   65536,         256 << 10, 1 << 20, (1 << 20) + 1,
                                   4 << 20, (4 << 20) + 1, 16 << 20,  32 << 20};
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            dirty_and_free(n);
            unsigned char *p = round == 2 ? calloc(n / 16 + 1, 16) : calloc(1, n);
            check_zero(p, n, "calloc");
            memset(p, 0xAA, n); /* dirty it for the next round too */
            free(p);
        }
    }
}

/* Every pair of tier sizes: contents survive, neighbours are untouched. */
static void t_realloc_tiers(void)
{
    for (size_t i = 0; i < NTIER; i++) {
        for (size_t j = 0; j < NTIER; j++) {
            size_t from = tier_sizes[i], to = tier_sizes[j];
            uint64_t seed = i * 100 + j;
            unsigned char *p = malloc(from);
            REQUIRE(p, "malloc(%zu) failed", from);
            /* A neighbour of the same size: in-place growth must not eat it. */
            unsigned char *neighbour = malloc(from);
            REQUIRE(neighbour, "malloc(%zu) failed", from);
            size_t nu = malloc_usable_size(neighbour);
            fill_pattern(neighbour, nu, ~seed);
            fill_pattern(p, from, seed);

            unsigned char *q = realloc(p, to);
            REQUIRE(q, "realloc(%zu -> %zu) returned NULL", from, to);
            CHECK_OWNS(q);
            size_t keep = from < to ? from : to;
            long bad = check_pattern(q, keep, seed);
            CHECK(bad < 0, "realloc(%zu -> %zu) lost the contents at offset %ld", from, to, bad);
            size_t usable = malloc_usable_size(q);
            CHECK(usable >= to, "realloc(%zu -> %zu): usable size %zu", from, to, usable);
            memset(q, 0x77, usable); /* the whole new block is writable */
            bad = check_pattern(neighbour, nu, ~seed);
            CHECK(bad < 0, "realloc(%zu -> %zu) overwrote a neighbouring block at offset %ld", from, to, bad);
            free(q);
            free(neighbour);
        }
    }
}

/* One block grown step by step through every tier, then shrunk back. */
static void t_realloc_chain(void)
{
    const uint64_t seed = 99;
    unsigned char *p = malloc(tier_sizes[0]);
    REQUIRE(p, "malloc failed");
    fill_pattern(p, tier_sizes[0], seed);
    /* fill_pattern is position-dependent only, so a prefix of a longer fill
     * equals a shorter fill. */
    for (size_t i = 1; i < NTIER; i++) {
        unsigned char *q = realloc(p, tier_sizes[i]);
        REQUIRE(q, "realloc(%zu -> %zu) returned NULL", tier_sizes[i - 1], tier_sizes[i]);
        CHECK_OWNS(q);
        long bad = check_pattern(q, tier_sizes[i - 1], seed);
        CHECK(bad < 0, "growing %zu -> %zu lost the contents at offset %ld", tier_sizes[i - 1], tier_sizes[i], bad);
        fill_pattern(q, tier_sizes[i], seed);
        p = q;
    }
    for (size_t i = NTIER - 1; i-- > 0;) {
        unsigned char *q = realloc(p, tier_sizes[i]);
        REQUIRE(q, "realloc(%zu -> %zu) returned NULL", tier_sizes[i + 1], tier_sizes[i]);
        CHECK_OWNS(q);
        long bad = check_pattern(q, tier_sizes[i], seed);
        CHECK(bad < 0, "shrinking %zu -> %zu lost the contents at offset %ld", tier_sizes[i + 1], tier_sizes[i], bad);
        p = q;
    }
    free(p);
}

/* Small steps: realloc by +1..+64 bytes from 1 B to 40 KiB and back, the
 * pattern every allocator's in-place growth path sees. */
static void t_realloc_small_steps(void)
{
    const uint64_t seed = 5;
    uint64_t rng = 77;
    size_t n = 1;
    unsigned char *p = malloc(n);
    REQUIRE(p, "malloc failed");
    fill_pattern(p, n, seed);
    while (n < 40000) {
        size_t m = n + 1 + rng_next(&rng) % 64;
        unsigned char *q = realloc(p, m);
        REQUIRE(q, "realloc(%zu -> %zu) returned NULL", n, m);
        long bad = check_pattern(q, n, seed);
        CHECK(bad < 0, "realloc(%zu -> %zu) lost the contents at offset %ld", n, m, bad);
        fill_pattern(q, m, seed);
        p = q;
        n = m;
    }
    while (n > 1) {
        size_t step = 1 + rng_next(&rng) % 64;
        size_t m = n > step ? n - step : 1;
        unsigned char *q = realloc(p, m);
        REQUIRE(q, "realloc(%zu -> %zu) returned NULL", n, m);
        long bad = check_pattern(q, m, seed);
        CHECK(bad < 0, "realloc(%zu -> %zu) lost the contents at offset %ld", n, m, bad);
        p = q;
        n = m;
    }
    CHECK_OWNS(p);
    free(p);
}

/* realloc(NULL, n) is malloc(n). */
static void t_realloc_null(void)
{
    for (size_t i = 0; i < NTIER; i++) {
        unsigned char *p = realloc(NULL, tier_sizes[i]);
        REQUIRE(p, "realloc(NULL, %zu) returned NULL", tier_sizes[i]);
        CHECK_OWNS(p);
        size_t usable = malloc_usable_size(p);
        CHECK(usable >= tier_sizes[i], "realloc(NULL, %zu): usable size %zu", tier_sizes[i], usable);
        memset(p, 1, usable);
        free(p);
    }
}

/* realloc(p, 0) frees p (glibc returns NULL); a non-NULL result must be a
 * block that free accepts. Only "does not crash" is checked: C23 made it
 * undefined. */
static void t_realloc_zero(void)
{
    for (size_t i = 0; i < NTIER; i++) {
        void *p = malloc(tier_sizes[i]);
        REQUIRE(p, "malloc(%zu) failed", tier_sizes[i]);
        void *q = realloc(p, 0);
        if (q) {
            CHECK_OWNS(q);
            free(q);
        }
    }
    void *q = realloc(NULL, 0);
    if (q) {
        CHECK_OWNS(q);
        free(q);
    }
}

/* realloc to the same size (and to sizes within the usable size) keeps
 * the contents. */
static void t_realloc_same(void)
{
    for (size_t i = 0; i < NTIER; i++) {
        size_t n = tier_sizes[i];
        unsigned char *p = malloc(n);
        REQUIRE(p, "malloc(%zu) failed", n);
        fill_pattern(p, n, n);
        unsigned char *q = realloc(p, n);
        REQUIRE(q, "realloc(same size %zu) returned NULL", n);
        CHECK(check_pattern(q, n, n) < 0, "realloc to the same size %zu lost contents", n);
        size_t usable = malloc_usable_size(q);
        unsigned char *r = realloc(q, usable);
        REQUIRE(r, "realloc(%zu -> usable %zu) returned NULL", n, usable);
        CHECK(check_pattern(r, n, n) < 0, "realloc to the usable size %zu lost contents", usable);
        CHECK_OWNS(r);
        free(r);
    }
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"calloc_reuse_small", t_calloc_reuse_small},
        {"calloc_reuse_large", t_calloc_reuse_large},
        {"realloc_tiers", t_realloc_tiers},
        {"realloc_chain", t_realloc_chain},
        {"realloc_small_steps", t_realloc_small_steps},
        {"realloc_null", t_realloc_null},
        {"realloc_zero", t_realloc_zero},
        {"realloc_same", t_realloc_same},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
