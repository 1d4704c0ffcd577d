/* large_tier — big blocks: repeated 64 MiB and 1-16 MiB cycles must not grow
 * RSS (freed large blocks are unmapped, purged or reused, not piled up),
 * big alignments work for small and large requests, HAKMEM_THP's advice
 * reaches the kernel without keeping neighbours apart, and a block cached
 * across two kernel regions still grows. */
#include "check.h"
#include "hk_api.h"

#include <stdbool.h>
#include <sys/mman.h>

static void t_cycles_64m(void)
{
    const size_t n = 64 * MiB;
    size_t rss_before = rss_bytes();
    for (int i = 0; i < 200; i++) {
        unsigned char *p = malloc(n);
        REQUIRE(p, "malloc(64 MiB) failed in cycle %d: %s", i, strerror(errno));
        if (i % 50 == 0) {
            CHECK_OWNS(p);
            CHECK_ALIGNED(p, 16);
            CHECK(malloc_usable_size(p) >= n, "usable %zu", malloc_usable_size(p));
        }
        memset(p, i & 0xff, n);
        CHECK(p[n - 1] == (unsigned char)(i & 0xff), "last byte not written");
        free(p);
    }
    size_t rss_after = rss_bytes();
    CHECK(rss_after <= rss_before + 80 * MiB,
          "RSS after 200 x (malloc 64 MiB, memset, free) is %zu MiB, before %zu MiB: more than "
          "one block's worth (+80 MiB) stays resident",
          rss_after / MiB, rss_before / MiB);
}

/* What the BigCache may keep resident after the frees: its cap
 * (HAKMEM_BIGCACHE_MAX_MB, 256 MiB by default) and 16 MiB of slack. */
static size_t cache_slack(void)
{
    const char *cap = getenv("HAKMEM_BIGCACHE_MAX_MB");
    return ((cap && *cap ? (size_t)strtoull(cap, NULL, 10) : 256) + 16) * MiB;
}

/* Up to four live blocks of 1..16 MiB (odd sizes), replaced at random. */
static void t_cycles_1_16m(void)
{
    enum { SLOTS = 4, OPS = 400 };
    unsigned char *slot[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    uint64_t rng = 2024;
    size_t rss_start = rss_bytes();
    const size_t live_max = SLOTS * 16 * MiB;
    for (int op = 0; op < OPS; op++) {
        int s = op % SLOTS;
        if (slot[s]) {
            CHECK(slot[s][0] == (unsigned char)size[s] && slot[s][size[s] - 1] == (unsigned char)size[s],
                  "a live %zu-byte block changed", size[s]);
            free(slot[s]);
        }
        size[s] = MiB + rng_next(&rng) % (15 * MiB);
        slot[s] = malloc(size[s]);
        REQUIRE(slot[s], "malloc(%zu) failed at op %d", size[s], op);
        memset(slot[s], (unsigned char)size[s], size[s]);
        if (op % 50 == 49) {
            size_t rss = rss_bytes();
            CHECK(rss <= rss_start + live_max + cache_slack(),
                  "RSS %zu MiB after %d ops (start %zu MiB, at most 64 MiB live, %zu MiB of cache and slack): freed "
                  "blocks pile up",
                  rss / MiB, op + 1, rss_start / MiB, cache_slack() / MiB);
        }
    }
    for (int s = 0; s < SLOTS; s++)
        free(slot[s]);
    size_t rss_end = rss_bytes();
    CHECK(rss_end <= rss_start + cache_slack(),
          "RSS %zu MiB after freeing everything, %zu MiB at the start: more than the BigCache's %zu MiB kept",
          rss_end / MiB, rss_start / MiB, cache_slack() / MiB);
}

/* The BigCache splits a cached mapping larger than a request (the head
 * goes out, the tail stays cached) and merges a freed mapping with the
 * cached ones next to it: a 12 MiB block freed, two 3 MiB ones come from
 * its head, freed again they merge back, and the next 12 MiB is the first
 * block again; no mapping is made after the first. */
static void t_bigcache_split_merge(void)
{
    char *big = malloc(12 * MiB);
    REQUIRE(big, "malloc(12 MiB)");
    memset(big, 1, 12 * MiB);
    free(big);
    struct hakmem_stats s0 = hk_have_api() ? hk_stats() : (struct hakmem_stats){0};
    char *a = malloc(3 * MiB), *b = malloc(3 * MiB);
    REQUIRE(a && b, "malloc(3 MiB)");
    memset(a, 2, 3 * MiB);
    memset(b, 3, 3 * MiB);
    CHECK(a + 3 * MiB <= b || b + 3 * MiB <= a, "the two 3 MiB blocks overlap");
    CHECK(a[3 * MiB - 1] == 2 && b[0] == 3, "the 3 MiB blocks lost their contents");
    if (hk_have_api()) {
        CHECK(a == big && b == big + 3 * MiB, "3 MiB blocks at %p and %p, not the head of the 12 MiB at %p", (void *)a,
              (void *)b, (void *)big);
    }
    free(a);
    free(b);
    char *again = malloc(12 * MiB);
    REQUIRE(again, "malloc(12 MiB) again");
    memset(again, 4, 12 * MiB);
    if (hk_have_api()) {
        struct hakmem_stats s1 = hk_stats();
        CHECK(again == big, "12 MiB again at %p, the merged mapping was at %p", (void *)again, (void *)big);
        CHECK(s1.tier_mapped[4] == s0.tier_mapped[4], "Large mappings grew by %llu bytes: a cache miss",
              (unsigned long long)(s1.tier_mapped[4] - s0.tier_mapped[4]));
        CHECK(s1.bigcache_hits - s0.bigcache_hits == 3, "%llu BigCache hits, want 3",
              (unsigned long long)(s1.bigcache_hits - s0.bigcache_hits));
    }
    free(again);
}

/* 2 MiB alignment for 1 B, 4 KiB and 3 MiB requests, by every aligned API. */
static void t_align_2m(void)
{
    const size_t align = 2 * MiB;
    const size_t sizes[] = {1, 4096, 3 * MiB};
    void *live[9];
    int nlive = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        void *p = NULL;
        int rc = posix_memalign(&p, align, n);
        CHECK(rc == 0, "posix_memalign(2 MiB, %zu) returned %d", n, rc);
        void *q = aligned_alloc(align, n);
        void *r = memalign(align, n);
        void *got[3] = {p, q, r};
        const char *how[3] = {"posix_memalign", "aligned_alloc", "memalign"};
        for (int k = 0; k < 3; k++) {
            REQUIRE(got[k], "%s(2 MiB, %zu) returned NULL", how[k], n);
            CHECK_OWNS(got[k]);
            CHECK(IS_ALIGNED(got[k], align), "%s(2 MiB, %zu) = %p is not 2 MiB aligned", how[k], n, got[k]);
            size_t usable = malloc_usable_size(got[k]);
            CHECK(usable >= n, "%s(2 MiB, %zu): usable %zu", how[k], n, usable);
            fill_pattern(got[k], usable, n + (size_t)k);
            live[nlive++] = got[k];
        }
    }
    /* All nine live at once: none overlaps another. */
    for (int i = 0; i < nlive; i++) {
        size_t n = sizes[i / 3];
        CHECK(check_pattern(live[i], malloc_usable_size(live[i]), n + (size_t)(i % 3)) < 0,
              "2 MiB-aligned block %d of %zu bytes was overwritten", i, n);
        free(live[i]);
    }
}

/* The VmFlags of the mapping holding p, from /proc/self/smaps. */
static void vma_flags(const void *p, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    REQUIRE(f, "open /proc/self/smaps");
    char line[512];
    bool inside = false;
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, size, "%s", line + 8);
            break;
        }
    }
    fclose(f);
    REQUIRE(out[0], "no mapping holds %p", p);
}

/* Whether this kernel puts two fresh anonymous mappings of `size` bytes
 * next to each other (some kernels align larger ones to 2 MiB
 * themselves, which hakmem cannot help). */
static bool kernel_places_adjacent(size_t size)
{
    char *x = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *y = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(x != MAP_FAILED && y != MAP_FAILED, "mmap(%zu)", size);
    bool adjacent = x + size == y || y + size == x;
    munmap(x, size);
    munmap(y, size);
    return adjacent;
}

static bool has_flag(const char *flags, const char *flag)
{
    for (const char *f = flags; (f = strstr(f, flag)) != NULL; f++)
        if ((f == flags || f[-1] == ' ') && (f[2] == ' ' || f[2] == '\n' || f[2] == '\0'))
            return true;
    return false;
}

/* HAKMEM_THP (off, auto: the default, on) as the kernel sees it: a 4 MiB
 * block's mapping is advised MADV_HUGEPAGE ("hg") under auto and on,
 * MADV_NOHUGEPAGE ("nh") under off; a 1.5 MiB one only under on. And two
 * fresh mappings of an odd size lie next to each other (no 2 MiB
 * alignment gap), so once freed they merge into one cache entry that
 * serves a request for both. */
static void t_thp(void)
{
    const char *policy = getenv("HAKMEM_THP");
    if (!policy || !*policy)
        policy = "auto";
    char *big = malloc(4 * MiB + 12 * 1024), *mid = malloc(1536 * 1024);
    REQUIRE(big && mid, "malloc");
    memset(big, 1, 4 * MiB + 12 * 1024);
    memset(mid, 2, 1536 * 1024);
    char big_flags[256], mid_flags[256];
    vma_flags(big, big_flags, sizeof big_flags);
    vma_flags(mid, mid_flags, sizeof mid_flags);
    printf("thp policy=%s big=%s", policy, big_flags);
    printf("thp policy=%s mid=%s", policy, mid_flags);
    /* A kernel built without THP refuses the advice: nothing to see. */
    bool thp_kernel = access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
    if (!thp_kernel)
        printf("thp: this kernel has no transparent huge pages, VmFlags not checked\n");
    if (hk_have_api() && thp_kernel) {
        bool off = strcmp(policy, "off") == 0, on = strcmp(policy, "on") == 0;
        CHECK(has_flag(big_flags, off ? "nh" : "hg"), "HAKMEM_THP=%s, 4 MiB block: VmFlags %s", policy, big_flags);
        CHECK(off  ? has_flag(mid_flags, "nh")
              : on ? has_flag(mid_flags, "hg")
                   : !has_flag(mid_flags, "hg"),
              "HAKMEM_THP=%s, 1.5 MiB block: VmFlags %s", policy, mid_flags);
    }
    const size_t odd = 3 * MiB + 20 * 1024;
    bool kernel_adjacent = kernel_places_adjacent(odd);
    char *a = malloc(odd), *b = malloc(odd);
    REQUIRE(a && b, "malloc(%zu)", odd);
    memset(a, 3, odd);
    memset(b, 4, odd);
    bool adjacent = a + odd == b || b + odd == a;
    printf("thp a=%p b=%p adjacent=%d (the kernel's own: %d)\n", (void *)a, (void *)b, adjacent, kernel_adjacent);
    free(a);
    free(b);
    if (hk_have_api() && kernel_adjacent) {
        struct hakmem_stats s0 = hk_stats();
        char *both = malloc(2 * odd);
        REQUIRE(both, "malloc(%zu)", 2 * odd);
        struct hakmem_stats s1 = hk_stats();
        CHECK(adjacent, "two fresh %zu-byte blocks at %p and %p: not next to each other", odd, (void *)a, (void *)b);
        CHECK(s1.bigcache_hits - s0.bigcache_hits == 1 && s1.tier_mapped[4] == s0.tier_mapped[4],
              "malloc(%zu) after freeing the two: %llu cache hits, %llu bytes newly mapped", 2 * odd,
              (unsigned long long)(s1.bigcache_hits - s0.bigcache_hits),
              (unsigned long long)(s1.tier_mapped[4] - s0.tier_mapped[4]));
        free(both);
    }
    free(big);
    free(mid);
}

/* A cached mapping made of two freed neighbours that the kernel keeps as
 * two regions (under the default HAKMEM_THP=auto a 2 MiB+ block's mapping
 * is advised MADV_HUGEPAGE, a 1.5 MiB one's is not): a block served from
 * it still grows by realloc, contents kept (mremap refuses to grow across
 * the regions; the block must move instead). The kernel places a new
 * mapping right below the last one unless a higher hole fits it: pairs
 * are tried until one is adjacent, the others kept meanwhile. */
static void t_realloc_across(void)
{
    const size_t small = 1536 * 1024, big = 2 * MiB + 8 * 1024, want = small + big - 64 * 1024, grown = 12 * MiB;
    char *kept[16];
    int nkept = 0;
    char *a = NULL, *b = NULL;
    /* glibc gives these sizes a header in front: never adjacent. */
    for (int tries = 0; tries < 8 && !a && hk_have_api(); tries++) {
        char *x = malloc(big), *y = malloc(small);
        REQUIRE(x && y, "malloc");
        memset(x, 1, big);
        memset(y, 2, small);
        if (y + small == x || x + big == y) {
            a = x;
            b = y;
        } else {
            kept[nkept++] = x;
            kept[nkept++] = y;
        }
    }
    printf("realloc_across a=%p b=%p after %d non-adjacent pairs\n", (void *)a, (void *)b, nkept / 2);
    if (hk_have_api())
        REQUIRE(a, "no two fresh Large mappings next to each other in 8 tries");
    free(a);
    free(b);
    char *p = malloc(want);
    REQUIRE(p, "malloc(%zu)", want);
    if (a)
        CHECK(p == (a < b ? a : b), "malloc(%zu) at %p, not from the merged neighbours at %p", want, (void *)p,
              (void *)(a < b ? a : b));
    fill_pattern(p, want, 7);
    char *q = realloc(p, grown);
    REQUIRE(q, "realloc(%zu -> %zu) failed: %s", want, grown, strerror(errno));
    CHECK(check_pattern(q, want, 7) < 0, "realloc(%zu -> %zu) lost the contents", want, grown);
    memset(q + want, 3, grown - want);
    free(q);
    for (int i = 0; i < nkept; i++)
        free(kept[i]);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"cycles_64m", t_cycles_64m},
        {"cycles_1_16m", t_cycles_1_16m},
        {"align_2m", t_align_2m},
        {"bigcache_split_merge", t_bigcache_split_merge},
        {"thp", t_thp},
        {"realloc_across", t_realloc_across},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
