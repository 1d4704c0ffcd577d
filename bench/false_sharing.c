/* false_sharing: Hoard's cache-thrash and cache-scratch (both in
 * mimalloc-bench). Each thread repeatedly allocates an 8 B object, writes
 * every byte of it many times, and frees it.
 *   thrash   (active false sharing) the threads allocate concurrently; an
 *            allocator that carves their objects from one cache line makes
 *            the cores fight over it
 *   scratch  (passive false sharing) the main thread first allocates one
 *            object per thread, adjacent in memory, and each thread starts by
 *            freeing "its" one; an allocator that then hands that block back
 *            to the thread reproduces the sharing
 * The write loop dominates on purpose: a good allocator makes threads=2 run
 * in about half the time of threads=1, a bad one can make it slower.
 * Half the ops go to each variant; an op is one allocation with its writes. */
#include "bench_common.h"

#define OBJ_SIZE 8
#define WRITES 100 /* per byte and allocation */

struct worker {
    uint64_t iterations;
    void *inherited; /* scratch: the object the main thread made for us */
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    free(w->inherited);
    for (uint64_t i = 0; i < w->iterations; i++) {
        volatile unsigned char *p = xmalloc(OBJ_SIZE);
        for (int rep = 0; rep < WRITES; rep++)
            for (int b = 0; b < OBJ_SIZE; b++)
                p[b] = (unsigned char)(p[b] + 1);
        free((void *)p);
    }
    return NULL;
}

/* Runs one variant with the op count split across n threads; returns seconds. */
static double run_variant(int n, uint64_t ops, int scratch)
{
    struct worker *w = bench_map((size_t)n * sizeof *w);
    pthread_t *tids = bench_map((size_t)n * sizeof *tids);
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        w[i].iterations = ops / (uint64_t)n;
        w[i].inherited = NULL;
        if (scratch) {
            w[i].inherited = xmalloc(OBJ_SIZE);
            bench_touch(w[i].inherited, OBJ_SIZE, 1);
        }
    }
    bench_spawn(tids, n, worker_run, w, sizeof *w);
    bench_join(tids, n);
    double seconds = bench_now() - t0;
    bench_unmap(w, (size_t)n * sizeof *w);
    bench_unmap(tids, (size_t)n * sizeof *tids);
    return seconds;
}

int main(int argc, char **argv)
{
    struct bench_args a = bench_parse(argc, argv);
    int n = a.threads;
    uint64_t half = bench_ops(&a, 6000000ULL) / 2 / (uint64_t)n * (uint64_t)n;
    double thrash = run_variant(n, half, 0);
    double scratch = run_variant(n, half, 1);
    char extra[96];
    snprintf(extra, sizeof extra, " thrash_seconds=%.6f scratch_seconds=%.6f", thrash, scratch);
    bench_result("false_sharing", n, thrash + scratch, 2 * half, bench_rss_kb(), 0, extra);
    return 0;
}
