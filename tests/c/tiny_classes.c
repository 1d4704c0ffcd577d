/* tiny_classes — the Tiny tier seen from one thread: the size-class map,
 * routing profiles, the HAKMEM_TINY_SS_MAX_MB cap, memory returned after
 * the live set drops or while a class shrinks and still allocates (sparse
 * slabs), and the workloads that tests/test_tiny.py traces
 * with bpftrace (thread-cache spills and refills, SuperSlab tiers).
 *
 * Workload sizes come from HKTEST_* environment variables (the pytest side
 * sets them); results the pytest side asserts on are printed as
 * "key=value" lines. */
#include "check.h"
#include "hk_api.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>

/* ---- class map ------------------------------------------------------------ */

/* Every size 1..32768: the usable size is the smallest class >= size, the
 * block is 16-byte aligned (8 for the 8-byte class), the whole usable size
 * can be written without touching another block, and the tier is Tiny up
 * to 1 KiB, Mid above. Blocks up to 1 KiB all stay live together (about
 * 0.5 MiB); larger ones in a window of 64. */
static void t_class_map(void)
{
    enum { SMALL = 1024, BIG = 32768, WINDOW = 64 };
    static unsigned char *small[SMALL + 1];
    unsigned char *window[WINDOW] = {0};
    size_t window_size[WINDOW] = {0};
    int hakmem = hk_have_api();

    for (size_t size = 1; size <= BIG; size++) {
        unsigned char *p = malloc(size);
        REQUIRE(p, "malloc(%zu) failed: %s", size, strerror(errno));
        size_t usable = malloc_usable_size(p);
        if (hakmem) {
            size_t want = hk_class_for(size);
            CHECK(usable == want, "malloc_usable_size(malloc(%zu)) = %zu, expected the class size %zu", size, usable,
                  want);
            int tier = hk_tier(p);
            int want_tier = size <= 1024 ? HAKMEM_TIER_TINY : HAKMEM_TIER_MID;
            CHECK(tier == want_tier, "hakmem_tier_of(malloc(%zu)) = %s, expected %s", size, hk_tier_name(tier),
                  hk_tier_name(want_tier));
            CHECK_OWNS(p);
        } else {
            CHECK(usable >= size, "malloc_usable_size(malloc(%zu)) = %zu", size, usable);
        }
        if (size > 8)
            CHECK_ALIGNED(p, 16);
        else
            CHECK_ALIGNED(p, 8);
        fill_pattern(p, usable, size);
        if (size <= SMALL) {
            small[size] = p;
            continue;
        }
        size_t slot = size % WINDOW;
        if (window[slot]) {
            size_t n = window_size[slot];
            long bad = check_pattern(window[slot], malloc_usable_size(window[slot]), n);
            CHECK(bad < 0, "the %zu-byte block %p changed at offset %ld while other blocks were written", n,
                  (void *)window[slot], bad);
            free(window[slot]);
        }
        window[slot] = p;
        window_size[slot] = size;
    }
    for (size_t size = 1; size <= SMALL; size++) {
        long bad = check_pattern(small[size], malloc_usable_size(small[size]), size);
        CHECK(bad < 0, "the %zu-byte block %p (usable %zu) changed at offset %ld while other blocks were written", size,
              (void *)small[size], malloc_usable_size(small[size]), bad);
        free(small[size]);
    }
    for (size_t slot = 0; slot < WINDOW; slot++) {
        if (!window[slot])
            continue;
        long bad = check_pattern(window[slot], malloc_usable_size(window[slot]), window_size[slot]);
        CHECK(bad < 0, "the %zu-byte block changed at offset %ld", window_size[slot], bad);
        free(window[slot]);
    }
}

/* ---- routing profiles ----------------------------------------------------- */

/* For each of 16, 600 and 1000 bytes: 200 blocks, all of one tier, usable
 * and freeable; prints "route size=S tier=T fallbacks=F" (F: the
 * tiny_fallbacks counter's growth over the 200 mallocs) for the pytest side,
 * which knows what HAKMEM_TINY_PROFILE / HAKMEM_WRAP_TINY it set. */
static void t_routing(void)
{
    enum { N = 200 };
    static const size_t sizes[] = {16, 600, 1000};
    static unsigned char *blocks[N];
    int tiers[3];
    uint64_t fallbacks[3];
    hk_have_api();
    for (size_t s = 0; s < 3; s++) {
        size_t size = sizes[s];
        struct hakmem_stats before = hk_stats();
        for (int i = 0; i < N; i++) {
            blocks[i] = malloc(size);
            REQUIRE(blocks[i], "malloc(%zu) failed: %s", size, strerror(errno));
        }
        struct hakmem_stats after = hk_stats();
        fallbacks[s] = after.tiny_fallbacks - before.tiny_fallbacks;
        tiers[s] = hk_tier(blocks[0]);
        for (int i = 0; i < N; i++) {
            int tier = hk_tier(blocks[i]);
            CHECK(tier == tiers[s], "malloc(%zu) #%d is in tier %s, #0 in %s", size, i, hk_tier_name(tier),
                  hk_tier_name(tiers[s]));
            CHECK(malloc_usable_size(blocks[i]) >= size, "usable %zu < %zu", malloc_usable_size(blocks[i]), size);
            CHECK_ALIGNED(blocks[i], 16);
            CHECK_OWNS(blocks[i]);
            fill_pattern(blocks[i], size, (uint64_t)i * 1000 + size);
        }
        for (int i = 0; i < N; i++) {
            long bad = check_pattern(blocks[i], size, (uint64_t)i * 1000 + size);
            CHECK(bad < 0, "malloc(%zu) #%d changed at offset %ld", size, i, bad);
            free(blocks[i]);
        }
        /* and the freed blocks are served again */
        for (int i = 0; i < N; i++) {
            blocks[i] = malloc(size);
            REQUIRE(blocks[i], "malloc(%zu) after free failed", size);
            memset(blocks[i], 0x5a, size);
        }
        for (int i = 0; i < N; i++)
            free(blocks[i]);
    }
    for (size_t s = 0; s < 3; s++)
        printf("route size=%zu tier=%s fallbacks=%llu\n", sizes[s], hk_tier_name(tiers[s]),
               (unsigned long long)fallbacks[s]);
}

/* ---- HAKMEM_TINY_SS_MAX_MB ------------------------------------------------ */

/* With HAKMEM_TINY_SS_MAX_MB=1 (set by the pytest side): 8 MiB of 64-byte
 * blocks. Every malloc succeeds; the first ones are Tiny, and once the cap
 * is reached every later one is served by the next tier; tiny_fallbacks
 * grows by exactly the number of blocks not in the Tiny tier; the Tiny
 * blocks fit in the cap; all contents survive. A second round after
 * freeing everything gets as many Tiny blocks as the first (the cap's
 * accounting gave the slabs back). Prints "cap tiny=N fallbacks=F". */
static size_t cap_round(unsigned char **blocks, size_t n, int round)
{
    struct hakmem_stats before = hk_stats();
    size_t tiny = 0, first_away = 0;
    for (size_t i = 0; i < n; i++) {
        blocks[i] = malloc(64);
        REQUIRE(blocks[i], "round %d: malloc(64) #%zu failed: %s", round, i, strerror(errno));
    }
    struct hakmem_stats after = hk_stats();
    for (size_t i = 0; i < n; i++) {
        int tier = hk_tier(blocks[i]);
        if (tier == HAKMEM_TIER_TINY) {
            tiny++;
            CHECK(first_away == 0, "round %d: block #%zu is Tiny again after #%zu had gone to another tier", round, i,
                  first_away - 1);
        } else if (first_away == 0) {
            first_away = i + 1;
        }
        CHECK(malloc_usable_size(blocks[i]) >= 64, "usable %zu", malloc_usable_size(blocks[i]));
        fill_pattern(blocks[i], 64, i * 31 + (size_t)round);
    }
    if (hk_have_api()) {
        size_t away = n - tiny;
        CHECK(away > 0, "round %d: all %zu blocks (8 MiB) are Tiny although HAKMEM_TINY_SS_MAX_MB=1", round, n);
        CHECK(tiny > 0, "round %d: no block is Tiny", round);
        CHECK(tiny * 64 <= MiB, "round %d: %zu Tiny blocks of 64 bytes exceed the 1 MiB cap", round, tiny);
        CHECK(after.tiny_fallbacks - before.tiny_fallbacks == away,
              "round %d: tiny_fallbacks grew by %llu, but %zu blocks are not Tiny", round,
              (unsigned long long)(after.tiny_fallbacks - before.tiny_fallbacks), away);
        CHECK(hk_tier(blocks[n - 1]) != HAKMEM_TIER_TINY, "round %d: the last block is still Tiny", round);
    }
    for (size_t i = 0; i < n; i++) {
        long bad = check_pattern(blocks[i], 64, i * 31 + (size_t)round);
        CHECK(bad < 0, "round %d: block #%zu (%p, tier %s) changed at offset %ld", round, i, (void *)blocks[i],
              hk_tier_name(hk_tier(blocks[i])), bad);
    }
    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
    printf("cap round=%d tiny=%zu fallbacks=%llu\n", round, tiny,
           (unsigned long long)(after.tiny_fallbacks - before.tiny_fallbacks));
    return tiny;
}

static void t_cap(void)
{
    size_t n = 8 * MiB / 64;
    unsigned char **blocks = malloc(n * sizeof *blocks);
    REQUIRE(blocks, "malloc for the block table failed");
    hk_have_api();
    size_t first = cap_round(blocks, n, 1);
    size_t second = cap_round(blocks, n, 2);
    if (hk_have_api())
        CHECK(second == first,
              "the second round got %zu Tiny blocks, the first %zu: the cap's accounting did not "
              "get the freed slabs back",
              second, first);
    free(blocks);
}

/* ---- thread-cache spills and refills (traced) ----------------------------- */

/* One fresh thread allocates HKTEST_COUNT blocks of HKTEST_SIZE bytes, then
 * frees them all (in allocation order), HKTEST_ROUNDS times. Prints the
 * thread's tid: the pytest side picks its tiny_spill / tiny_refill events
 * out of the trace and compares them with the capacity rules. */
static long spill_tid;

static void *spill_worker(void *arg)
{
    (void)arg;
    size_t size = (size_t)env_long("HKTEST_SIZE", 32);
    long count = env_long("HKTEST_COUNT", 300);
    long rounds = env_long("HKTEST_ROUNDS", 3);
    spill_tid = (long)syscall(SYS_gettid);
    unsigned char **blocks =
        mmap(NULL, (size_t)count * sizeof *blocks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(blocks != MAP_FAILED, "mmap failed");
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < count; i++) {
            blocks[i] = malloc(size);
            REQUIRE(blocks[i], "malloc(%zu) failed", size);
            fill_pattern(blocks[i], size, (uint64_t)(r * count + i));
        }
        for (long i = 0; i < count; i++) {
            long bad = check_pattern(blocks[i], size, (uint64_t)(r * count + i));
            CHECK(bad < 0, "round %ld block #%ld changed at offset %ld", r, i, bad);
            free(blocks[i]);
        }
    }
    munmap(blocks, (size_t)count * sizeof *blocks);
    return NULL;
}

static void t_spill(void)
{
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, spill_worker, NULL) == 0, "pthread_create failed");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join failed");
    printf("worker_tid=%ld\n", spill_tid);
}

/* ---- SuperSlab tiers (traced) ---------------------------------------------- */

/* Fill about four SuperSlabs with 64-byte blocks (1024 per 64 KiB slab),
 * free every block except those in every tenth slab (so ~90 % of the slabs
 * empty and go back to their SuperSlab), then allocate as many again. The
 * pytest side watches ss_tier: HOT -> DRAINING as utilisation falls, and
 * DRAINING -> HOT as the new slabs fill them again. Contents are checked. */
static void t_tiering(void)
{
    size_t n = (size_t)env_long("HKTEST_COUNT", 4 * 31 * 1024);
    unsigned char **blocks = mmap(NULL, n * sizeof *blocks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(blocks != MAP_FAILED, "mmap failed");
    struct hakmem_stats s0 = hk_stats();
    for (size_t i = 0; i < n; i++) {
        blocks[i] = malloc(64);
        REQUIRE(blocks[i], "malloc(64) #%zu failed", i);
        fill_pattern(blocks[i], 64, i);
    }
    struct hakmem_stats s1 = hk_stats();
    size_t freed = 0;
    for (size_t i = 0; i < n; i++) {
        if (((uintptr_t)blocks[i] >> 16) % 10 != 0) {
            long bad = check_pattern(blocks[i], 64, i);
            CHECK(bad < 0, "block #%zu changed at offset %ld", i, bad);
            free(blocks[i]);
            blocks[i] = NULL;
            freed++;
        }
    }
    struct hakmem_stats s2 = hk_stats();
    for (size_t i = 0; i < n; i++) {
        if (!blocks[i]) {
            blocks[i] = malloc(64);
            REQUIRE(blocks[i], "malloc(64) #%zu (second fill) failed", i);
            fill_pattern(blocks[i], 64, i);
        }
    }
    struct hakmem_stats s3 = hk_stats();
    for (size_t i = 0; i < n; i++) {
        long bad = check_pattern(blocks[i], 64, i);
        CHECK(bad < 0, "block #%zu changed at offset %ld", i, bad);
        free(blocks[i]);
    }
    munmap(blocks, n * sizeof *blocks);
    printf("tiering blocks=%zu freed=%zu superslabs=%llu,%llu,%llu,%llu\n", n, freed, (unsigned long long)s0.superslabs,
           (unsigned long long)s1.superslabs, (unsigned long long)s2.superslabs, (unsigned long long)s3.superslabs);
}

/* ---- memory returned after the live set drops ------------------------------ */

/* ~64 MiB of blocks of 1..1024 bytes (sizes at random); all but the first
 * 1 % allocated are freed, in allocation order, or in random order with
 * HKTEST_ORDER=random. In either order RSS must fall back to within
 * HKTEST_SLACK_MB (default 16) of where it started without malloc_trim:
 * a class that is only being freed hands its thread cache back, so cached
 * blocks scattered over the slabs do not keep them resident. (glibc keeps
 * the randomly freed heap until a trim: in glibc mode the random-order
 * bound is checked after malloc_trim(0).)
 * malloc_trim(0) must never raise RSS. The survivors keep their contents.
 * Prints the RSS figures. */
static void t_rss_drop(void)
{
    const size_t total = 64 * MiB;
    size_t cap = total / 256;
    unsigned char **blocks =
        mmap(NULL, cap * sizeof *blocks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint16_t *sizes = mmap(NULL, cap * sizeof *sizes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t *order = mmap(NULL, cap * sizeof *order, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(blocks != MAP_FAILED && sizes != MAP_FAILED && order != MAP_FAILED, "mmap failed");
    const char *ord = getenv("HKTEST_ORDER");
    int random_order = ord && strcmp(ord, "random") == 0;
    size_t slack = (size_t)env_long("HKTEST_SLACK_MB", 16) * MiB;
    uint64_t rng = 77;

    size_t rss_start = rss_bytes();
    size_t n = 0, bytes = 0;
    while (bytes < total && n < cap) {
        size_t size = 1 + rng_next(&rng) % 1024;
        blocks[n] = malloc(size);
        REQUIRE(blocks[n], "malloc(%zu) failed", size);
        sizes[n] = (uint16_t)size;
        fill_pattern(blocks[n], size, n);
        bytes += size;
        n++;
    }
    size_t rss_full = rss_bytes();
    size_t keep = n / 100;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    if (random_order) {
        for (size_t i = n - 1; i > keep; i--) {
            size_t j = keep + rng_next(&rng) % (i - keep + 1);
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    for (size_t k = keep; k < n; k++) {
        size_t i = order[k];
        free(blocks[i]);
        blocks[i] = NULL;
    }
    size_t rss_dropped = rss_bytes();
    int trimmed = malloc_trim(0);
    size_t rss_trimmed = rss_bytes();
    for (size_t i = 0; i < keep; i++) {
        long bad = check_pattern(blocks[i], sizes[i], i);
        CHECK(bad < 0, "survivor #%zu (%u bytes) changed at offset %ld", i, sizes[i], bad);
        free(blocks[i]);
    }
    CHECK(rss_full >= rss_start + total / 2,
          "RSS grew by only %zu MiB for %zu MiB of blocks: the test did not "
          "measure what it means to",
          (rss_full - rss_start) / MiB, bytes / MiB);
    int after_trim = random_order && hk_glibc_mode();
    size_t checked = after_trim ? rss_trimmed : rss_dropped;
    CHECK(checked <= rss_start + slack,
          "after freeing 99 %% of %zu MiB of blocks (%s order)%s RSS is %.1f MiB, %.1f MiB above the start "
          "(%.1f MiB at the peak): more than %zu MiB kept",
          bytes / MiB, random_order ? "random" : "allocation", after_trim ? " and malloc_trim(0)" : "",
          checked / (double)MiB, ((double)checked - (double)rss_start) / (double)MiB, rss_full / (double)MiB,
          slack / MiB);
    CHECK(rss_trimmed <= rss_dropped + 256 * 1024, "malloc_trim(0) raised RSS from %zu KiB to %zu KiB",
          rss_dropped / 1024, rss_trimmed / 1024);
    printf("rss start_kib=%zu full_kib=%zu dropped_kib=%zu trimmed_kib=%zu blocks=%zu trim=%d\n", rss_start / 1024,
           rss_full / 1024, rss_dropped / 1024, rss_trimmed / 1024, n, trimmed);
    munmap(blocks, cap * sizeof *blocks);
    munmap(sizes, cap * sizeof *sizes);
    munmap(order, cap * sizeof *order);
}

/* HAKMEM_TINY_SS_MIN_MB / _RESERVE: HKTEST_MIN_SS SuperSlabs (2 MiB each)
 * are mapped from the first allocation on and stay mapped after every
 * block is freed and malloc_trim(0); with HKTEST_MIN_SS=0 (no reservation)
 * the trim leaves at most 1. */
static void t_ss_reserve(void)
{
    if (!hk_have_api())
        return;
    long want = env_long("HKTEST_MIN_SS", 0);
    void *first = malloc(16);
    REQUIRE(first, "malloc(16)");
    struct hakmem_stats s = hk_stats();
    if (want)
        CHECK((long)s.superslabs >= want, "%llu SuperSlabs mapped at start-up, HAKMEM_TINY_SS_MIN_MB asks %ld",
              (unsigned long long)s.superslabs, want);
    enum { N = 200000 };
    void **blocks = malloc(N * sizeof *blocks);
    REQUIRE(blocks, "malloc");
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(64);
        REQUIRE(blocks[i], "malloc(64)");
    }
    s = hk_stats();
    CHECK((long)s.superslabs > want, "12 MiB of blocks took only %llu SuperSlabs", (unsigned long long)s.superslabs);
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    free(blocks);
    free(first);
    malloc_trim(0);
    s = hk_stats();
    if (want)
        CHECK((long)s.superslabs >= want, "%llu SuperSlabs left after malloc_trim, the reservation is %ld",
              (unsigned long long)s.superslabs, want);
    else
        CHECK(s.superslabs <= 1, "%llu SuperSlabs left after freeing everything and malloc_trim",
              (unsigned long long)s.superslabs);
    printf("superslabs after trim: %llu\n", (unsigned long long)s.superslabs);
}

/* HAKMEM_TINY_DECAY_MS: slabs that empty stay resident ("dirty") until they
 * have been free for the decay time, up to 1 MiB + 1/16 of the slab memory in
 * use; then a later slow-path allocation purges them. One block per
 * SuperSlab stays live so that no SuperSlab is unmapped (that would drop
 * its dirty slabs without a purge). HKTEST_DECAY=now runs with
 * HAKMEM_TINY_DECAY_MS=0 (purged at release), HKTEST_DECAY=later with 300. */
static void t_decay(void)
{
    if (!hk_have_api())
        return;
    const char *mode = getenv("HKTEST_DECAY");
    int later = mode && strcmp(mode, "later") == 0;
    enum { N = 16 * 1024 * 1024 / 64 };
    void **blocks = mmap(NULL, N * sizeof *blocks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(blocks != MAP_FAILED, "mmap");
    uintptr_t last_region = 0;
    size_t kept = 0;
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(64);
        REQUIRE(blocks[i], "malloc(64)");
        memset(blocks[i], 1, 64);
    }
    struct hakmem_stats before = hk_stats();
    for (int i = 0; i < N; i++) {
        uintptr_t region = (uintptr_t)blocks[i] >> 21;
        if (region != last_region) {
            last_region = region;
            kept++;
            continue;
        }
        free(blocks[i]);
        blocks[i] = NULL;
    }
    struct hakmem_stats freed = hk_stats();
    uint64_t purged_at_free = freed.purged_bytes - before.purged_bytes;
    printf("kept %zu blocks; purged at free: %llu KiB\n", kept, (unsigned long long)purged_at_free / 1024);
    if (!later) {
        CHECK(purged_at_free >= 12ull << 20, "HAKMEM_TINY_DECAY_MS=0 purged only %llu KiB of ~16 MiB of empty slabs",
              (unsigned long long)purged_at_free / 1024);
    } else {
        CHECK(purged_at_free <= (16ull << 20) - (512u << 10),
              "with a 300 ms decay, %llu KiB were purged at once: nothing stayed resident for reuse",
              (unsigned long long)purged_at_free / 1024);
        usleep(400 * 1000);
        /* Slow-path allocations of another class run the decay. */
        void *other[4096];
        for (int i = 0; i < 4096; i++)
            other[i] = malloc(700);
        for (int i = 0; i < 4096; i++)
            free(other[i]);
        struct hakmem_stats after = hk_stats();
        /* decay_purged_bytes only grows: purged_bytes is net of the pages
         * the 700-byte blocks took back (os_reuse), and went negative. */
        uint64_t purged_later = after.decay_purged_bytes - freed.decay_purged_bytes;
        printf("purged after the decay: %llu KiB\n", (unsigned long long)purged_later / 1024);
        CHECK(purged_later >= 512u << 10, "only %llu KiB purged once the decay time had passed",
              (unsigned long long)purged_later / 1024);
    }
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    munmap(blocks, N * sizeof *blocks);
}

/* ---- a class that shrinks while it still allocates ------------------------ */

/* 16 MiB of 256-byte blocks; then each step frees a random live block and
 * every other step allocates a new one, until a tenth is live. The
 * survivors, old and new, would stay spread over all the class's slabs,
 * a few on every page; sparse slabs (tiny.c) gather the new ones in the
 * fullest slabs and let the others empty. Prints the tier's resident
 * estimate and the RSS growth; the survivors keep their contents. */
static void t_shrink(void)
{
    enum { SIZE = 256 };
    const size_t n0 = 16 * MiB / SIZE;
    unsigned char **live = mmap(NULL, n0 * sizeof *live, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint32_t *tag = mmap(NULL, n0 * sizeof *tag, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(live != MAP_FAILED && tag != MAP_FAILED, "mmap failed");
    uint64_t rng = 99;
    uint32_t next_tag = 1;
    size_t rss0 = rss_bytes(), resident0 = 0;
    if (hk_have_api()) {
        struct hakmem_stats s = hk_stats();
        resident0 = s.tier_mapped[1] - s.tier_purged[1];
    }
    for (size_t i = 0; i < n0; i++) {
        live[i] = malloc(SIZE);
        REQUIRE(live[i], "malloc(%d)", SIZE);
        tag[i] = next_tag++;
        fill_pattern(live[i], SIZE, tag[i]);
    }
    size_t count = n0;
    for (uint64_t step = 0; count > n0 / 10; step++) {
        size_t i = rng_next(&rng) % count;
        CHECK(check_pattern(live[i], SIZE, tag[i]) == -1, "block %zu overwritten", i);
        free(live[i]);
        live[i] = live[--count];
        tag[i] = tag[count];
        if (step & 1) {
            live[count] = malloc(SIZE);
            REQUIRE(live[count], "malloc(%d)", SIZE);
            tag[count] = next_tag++;
            fill_pattern(live[count], SIZE, tag[count]);
            count++;
        }
    }
    size_t rss1 = rss_bytes();
    size_t resident = 0;
    if (hk_have_api()) {
        struct hakmem_stats s = hk_stats();
        resident = s.tier_mapped[1] - s.tier_purged[1];
        resident = resident > resident0 ? resident - resident0 : 0;
    }
    printf("shrink live_kb=%zu resident_kb=%zu rss_growth_kb=%zu\n", count * SIZE / 1024, resident / 1024,
           (rss1 > rss0 ? rss1 - rss0 : 0) / 1024);
    /* Measured: 8.1 MiB more resident with sparse slabs, 13.5 MiB without
     * (glibc's RSS grows by 18 MiB). */
    if (hk_have_api())
        CHECK(resident <= 11 * MiB, "%zu KiB resident for %zu KiB live after the class shrank", resident / 1024,
              count * SIZE / 1024);
    for (size_t i = 0; i < count; i++) {
        CHECK(check_pattern(live[i], SIZE, tag[i]) == -1, "survivor %zu overwritten", i);
        free(live[i]);
    }
    munmap(live, n0 * sizeof *live);
    munmap(tag, n0 * sizeof *tag);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"class_map", t_class_map},   {"routing", t_routing}, {"cap", t_cap},
        {"spill", t_spill},           {"tiering", t_tiering}, {"rss_drop", t_rss_drop},
        {"ss_reserve", t_ss_reserve}, {"decay", t_decay},     {"shrink", t_shrink},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
