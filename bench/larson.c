/* larson: the server model of Larson & Krishnan, as run by mimalloc-bench
 * ("larson 8 1000 5000 ..."). A shared array holds 5000 blocks (8 - 1000 B,
 * uniform) per thread, split into one region per thread. The run is a series
 * of rounds; in each round a fresh set of threads starts, thread i takes
 * region (i + round) mod N and replaces random slots in it, then exits.
 * So every free hits a block allocated by another thread, one that has
 * already exited: the allocator must cope with thread-cache teardown and
 * with memory whose owner is gone, at a high rate of thread creation.
 * An op is one replacement (free + malloc). */
#include "bench_common.h"

#define SLOTS_PER_THREAD 5000
#define ROUNDS 20
#define MIN_SIZE 8
#define MAX_SIZE 1000

struct region {
    void **ptr;
    uint32_t *size;
};

struct worker {
    struct region *regions; /* all regions, shared */
    int nthreads;
    int index;
    int round;
    uint64_t ops;
};

static void replace(struct region *reg, size_t i, size_t size)
{
    unsigned char tag = (unsigned char)i;
    if (reg->ptr[i]) {
        bench_check(reg->ptr[i], reg->size[i], tag);
        free(reg->ptr[i]);
    }
    reg->ptr[i] = xmalloc(size);
    reg->size[i] = (uint32_t)size;
    bench_touch(reg->ptr[i], size, tag);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct region *reg = &w->regions[(w->index + w->round) % w->nthreads];
    bench_rng r;
    rng_seed(&r, (uint64_t)w->round * 1024 + (uint64_t)w->index + 1);
    for (uint64_t k = 0; k < w->ops; k++)
        replace(reg, (size_t)rng_below(&r, SLOTS_PER_THREAD), rng_between(&r, MIN_SIZE, MAX_SIZE));
    return NULL;
}

int main(int argc, char **argv)
{
    struct bench_args a = bench_parse(argc, argv);
    int n = a.threads;
    uint64_t per_thread_round = bench_ops(&a, 60000000ULL) / ((uint64_t)n * ROUNDS);
    struct region *regions = bench_map((size_t)n * sizeof *regions);
    struct worker *workers = bench_map((size_t)n * sizeof *workers);
    pthread_t *tids = bench_map((size_t)n * sizeof *tids);
    bench_rng r;
    rng_seed(&r, 0);

    double t0 = bench_now();
    /* The main thread fills the array, so even round 0 frees remote blocks. */
    for (int i = 0; i < n; i++) {
        regions[i].ptr = bench_map(SLOTS_PER_THREAD * sizeof(void *));
        regions[i].size = bench_map(SLOTS_PER_THREAD * sizeof(uint32_t));
        for (size_t s = 0; s < SLOTS_PER_THREAD; s++)
            replace(&regions[i], s, rng_between(&r, MIN_SIZE, MAX_SIZE));
    }
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < n; i++)
            workers[i] = (struct worker){regions, n, i, round, per_thread_round};
        bench_spawn(tids, n, worker_run, workers, sizeof *workers);
        bench_join(tids, n);
    }
    double seconds = bench_now() - t0;

    uint64_t live = 0;
    for (int i = 0; i < n; i++)
        for (size_t s = 0; s < SLOTS_PER_THREAD; s++)
            live += regions[i].size[s];
    uint64_t ops = per_thread_round * (uint64_t)n * ROUNDS;
    char extra[64];
    snprintf(extra, sizeof extra, " ns_per_op=%.1f", seconds * 1e9 / (double)(ops ? ops : 1));
    bench_result("larson", n, seconds, ops, bench_rss_kb(), live, extra);
    return 0;
}
