/* A deterministic workload for the probe/counter ground truth: small blocks
 * in every class, blocks freed by another thread, threads that exit with
 * live blocks and threads that adopt them, Large blocks that hit and miss
 * the BigCache, a fallback from a routed-away band, and malloc_trim. At the
 * end it prints hakmem's counters and leaves with _exit, so no allocator
 * event happens after the snapshot. */
#include "check.h"
#include "hk_api.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 20000

static void *blocks[N];

static void *allocate_half(void *arg)
{
    (void)arg;
    for (int i = 0; i < N; i += 2) {
        blocks[i] = malloc(1 + (size_t)(i * 37) % 2000);
        memset(blocks[i], 1, 8);
    }
    return NULL; /* exits with its blocks live: abandoned */
}

static void *free_and_allocate(void *arg)
{
    (void)arg;
    for (int i = 0; i < N; i += 4) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
    void *mine[4000];
    for (int i = 0; i < 4000; i++)
        mine[i] = malloc(16 + (size_t)i % 300);
    for (int i = 0; i < 4000; i++)
        free(mine[i]);
    return NULL;
}

static void t_workload(void)
{
    for (int round = 0; round < 3; round++) {
        pthread_t a, b;
        REQUIRE(pthread_create(&a, NULL, allocate_half, NULL) == 0, "pthread_create");
        REQUIRE(pthread_join(a, NULL) == 0, "pthread_join");
        REQUIRE(pthread_create(&b, NULL, free_and_allocate, NULL) == 0, "pthread_create");
        REQUIRE(pthread_join(b, NULL) == 0, "pthread_join");
        for (int i = 0; i < N; i++) {
            free(blocks[i]);
            blocks[i] = NULL;
        }
    }
    for (int i = 0; i < 200; i++) { /* Large: cached, reused, evicted */
        void *p = malloc(1100000 + (size_t)(i % 7) * 300000);
        memset(p, 2, 64);
        free(p);
    }
    for (int i = 0; i < N; i++)
        blocks[i] = malloc(8 + (size_t)i % 1000);
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    malloc_trim(0);
    if (!hk_have_api())
        return;
    struct hakmem_stats s = hk_stats();
    char line[1024];
    int len = snprintf(
        line, sizeof(line),
        "truth os_map=%llu os_unmap=%llu os_purge=%llu purged_bytes=%llu tiny_refill=%llu tiny_spill_slabs=%llu "
        "tiny_fallback=%llu tiny_adopt=%llu tiny_abandon=%llu thread_exit=%llu large_cache_hit=%llu "
        "large_cache_miss=%llu\n",
        (unsigned long long)s.os_map_calls, (unsigned long long)s.os_unmap_calls, (unsigned long long)s.os_purge_events,
        (unsigned long long)s.purged_bytes, (unsigned long long)s.tiny_refills, (unsigned long long)s.tiny_spills,
        (unsigned long long)s.tiny_fallbacks, (unsigned long long)s.tiny_adopted, (unsigned long long)s.tiny_abandoned,
        (unsigned long long)s.threads_exited, (unsigned long long)s.bigcache_hits,
        (unsigned long long)s.bigcache_misses);
    /* write(2), not stdio: its buffer would be allocated after the snapshot. */
    if (write(STDOUT_FILENO, line, (size_t)len) != len || write(STDOUT_FILENO, "ok workload\n", 12) != 12)
        _exit(3);
    _exit(0);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"workload", t_workload},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
