/* Provokes every probe of the catalogue once the environment of
 * tests/test_probe_driver.py is set (a Tiny cap of 2 MiB, purge at release,
 * a small BigCache with a short decay, a bad and an unknown HAKMEM_*
 * variable): Tiny refills and spills, sparse slabs, remote frees and
 * drains, abandon and adopt, SuperSlab map, carve, release, tier change
 * and unmap, purge and
 * reuse, the cap and mmap-failure fallbacks, Large map, remap, unmap, cache
 * hit, miss, eviction and decay, L25 chunk map and unmap, pool refill,
 * spill and fallback, decay ticks, a failed mmap and an out-of-memory
 * NULL. */
#include "check.h"
#include "hk_api.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define N 40000

static void *blocks[N];
#define KEEP_MAX 200000
static void *keep[KEEP_MAX];

static void *allocate(void *arg)
{
    (void)arg;
    for (int i = 0; i < N; i++)
        blocks[i] = malloc(2048 + (size_t)i % 4096); /* 1-32 KiB classes: not under the Tiny cap */
    return NULL;
}

static void *free_half(void *arg)
{
    (void)arg;
    for (int i = 0; i < N; i += 2) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
    void *mine[2000];
    for (int i = 0; i < 2000; i++)
        mine[i] = malloc(3000);
    for (int i = 0; i < 2000; i++)
        free(mine[i]);
    return NULL;
}

static void t_all(void)
{
    /* Tiny: refills, spills, the 2 MiB cap (fallback reason 0). */
    void **small = malloc(200000 * sizeof(void *));
    REQUIRE(small, "malloc");
    for (int i = 0; i < 200000; i++) {
        small[i] = malloc(16 + (size_t)i % 48);
        REQUIRE(small[i], "malloc(small)");
    }
    for (int i = 0; i < 200000; i++)
        free(small[i]);
    free(small);

    /* Sparse slabs: a class's blocks freed at random leave its slabs under
     * half used (ss_slab_sparse). */
    enum { SPARSE_N = 8192 };
    void **sparse = malloc(SPARSE_N * sizeof(void *));
    REQUIRE(sparse, "malloc");
    for (int i = 0; i < SPARSE_N; i++)
        REQUIRE((sparse[i] = malloc(200)) != NULL, "malloc(200)");
    uint64_t lcg = 12345;
    for (int k = 0; k < SPARSE_N; k++) {
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        int i = (int)((lcg >> 33) % SPARSE_N);
        free(sparse[i]);
        sparse[i] = NULL;
    }
    for (int i = 0; i < SPARSE_N; i++)
        free(sparse[i]);
    free(sparse);

    /* Threads: remote frees into a live thread's slabs, abandon at exit,
     * adoption, SuperSlab tiers as most slabs empty. */
    pthread_t a, b;
    REQUIRE(pthread_create(&a, NULL, allocate, NULL) == 0, "pthread_create");
    REQUIRE(pthread_join(a, NULL) == 0, "pthread_join");
    REQUIRE(pthread_create(&b, NULL, free_half, NULL) == 0, "pthread_create");
    REQUIRE(pthread_join(b, NULL) == 0, "pthread_join");
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    for (int i = 0; i < 4000; i++) /* carve purged slabs again: os_reuse */
        blocks[i] = malloc(3000);
    for (int i = 0; i < 4000; i++)
        free(blocks[i]);

    /* L25: chunks mapped, refills in bundles, a thread cache spilling past
     * HAKMEM_WMAX_LARGE, the HAKMEM_CAP_LARGE fallback, decay, and chunks
     * unmapped by malloc_trim. */
    void *mid[48];
    int got = 0;
    for (int i = 0; i < 48; i++)
        if ((mid[i] = malloc(40000 + (size_t)(i % 5) * 100000)) != NULL)
            got++;
    CHECK(got == 48, "L25 blocks: %d of 48", got);
    for (int i = 0; i < 48; i++)
        free(mid[i]);
    usleep(200 * 1000); /* past HAKMEM_TINY_DECAY_MS=0: the next call purges */
    free(malloc(50000));
    malloc_trim(0);

    /* Large: map, cache hit, eviction over the 16 MiB cap, a block too big
     * to cache (unmapped), mremap, decay. */
    void *big[12];
    for (int i = 0; i < 12; i++)
        big[i] = malloc(1500000);
    for (int i = 0; i < 12; i++)
        free(big[i]);
    void *again = malloc(1500000);
    free(again);
    void *huge = malloc(6 << 20);
    free(huge);
    char *grow = malloc(1200000);
    REQUIRE(grow, "malloc");
    grow = realloc(grow, 5 << 20);
    REQUIRE(grow, "realloc");
    free(grow);
    usleep(200 * 1000); /* past HAKMEM_BIGCACHE_DECAY_MS */
    free(malloc(1700000));

    /* The address space runs out: a SuperSlab for a 1-32 KiB class cannot
     * be mapped (fallback reason 1), then neither can the Large block. */
    struct rlimit old, tight;
    REQUIRE(getrlimit(RLIMIT_AS, &old) == 0, "getrlimit");
    tight = old;
    tight.rlim_cur = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    REQUIRE(f && fscanf(f, "%lu", &pages) == 1, "statm");
    fclose(f);
    tight.rlim_cur = pages * 4096 + (1 << 20);
    REQUIRE(setrlimit(RLIMIT_AS, &tight) == 0, "setrlimit");
    int nulls = 0;
    int kept = 0;
    while (kept < KEEP_MAX) {
        void *p = malloc(20000);
        if (!p) {
            CHECK(errno == ENOMEM, "malloc failed with errno %d, not ENOMEM", errno);
            nulls++;
            break;
        }
        keep[kept++] = p;
    }
    CHECK(nulls == 1, "%d blocks of 20000 B under RLIMIT_AS + 1 MiB and no NULL", kept);
    void *l25_big = malloc(500000);
    CHECK(l25_big != NULL || errno == ENOMEM, "an L25 block under a tight RLIMIT_AS: errno %d", errno);
    free(l25_big);
    void *too_big = malloc(64 << 20);
    CHECK(too_big == NULL && errno == ENOMEM, "64 MiB under a tight RLIMIT_AS: %p errno %d", too_big, errno);
    REQUIRE(setrlimit(RLIMIT_AS, &old) == 0, "setrlimit restore");
    for (int i = 0; i < kept; i++)
        free(keep[i]);
    malloc_trim(0);

    /* HAKMEM_TINY_RSS_BUDGET_KB=2048 under 8 MiB of live blocks: diet
     * steps cut the caches to their floors, then the budget is reported
     * as not met, and allocation goes on. */
    void *live[512];
    for (int i = 0; i < 512; i++) {
        live[i] = malloc(16384);
        REQUIRE(live[i], "malloc under the budget");
        memset(live[i], 1, 16384);
    }
    struct hakmem_stats st = hk_stats();
    for (int round = 0; round < 400 && st.budget_exceeded == 0; round++) {
        void *churn[64];
        for (int i = 0; i < 64; i++)
            churn[i] = malloc(64 + (size_t)(i * 97) % 8000);
        for (int i = 0; i < 64; i++)
            free(churn[i]);
        usleep(2000);
        st = hk_stats();
    }
    if (hk_have_api())
        CHECK(st.diet_steps > 0 && st.budget_exceeded > 0, "budget: %llu diet steps, %llu exceeded",
              (unsigned long long)st.diet_steps, (unsigned long long)st.budget_exceeded);
    for (int i = 0; i < 512; i++)
        free(live[i]);
    printf("driver nulls=%d kept=%d\n", nulls, kept);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"all", t_all},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
