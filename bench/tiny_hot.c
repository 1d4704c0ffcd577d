/* tiny_hot: the hottest path there is, one 32 B size class on one thread.
 *   pair   malloc, write, free, again: the block never leaves the thread
 *          cache (the fast path's best case, and the instruction-count probe)
 *   batch  100 mallocs, then the 100 frees in allocation order: the cache
 *          has to hold a batch, as in a parser building and dropping a list
 * Half the ops go to each variant; BENCH_VARIANT=pair|batch runs one only,
 * which --instr uses to count each variant's instructions separately.
 * An op is one malloc+free pair. */
#include "bench_common.h"

#define OBJ_SIZE 32
#define BATCH 100

int main(int argc, char **argv)
{
    struct bench_args a = bench_parse(argc, argv);
    uint64_t ops = bench_ops(&a, 100000000ULL);
    const char *variant = getenv("BENCH_VARIANT");
    uint64_t pair_ops = ops / 2;
    if (variant && strcmp(variant, "pair") == 0)
        pair_ops = ops;
    else if (variant && strcmp(variant, "batch") == 0)
        pair_ops = 0;
    uint64_t batches = (ops - pair_ops) / BATCH;

    double t0 = bench_now();
    for (uint64_t i = 0; i < pair_ops; i++) {
        void *p = xmalloc(OBJ_SIZE);
        bench_touch(p, OBJ_SIZE, (unsigned char)i);
        free(p);
    }
    double t1 = bench_now();
    void *batch[BATCH];
    for (uint64_t b = 0; b < batches; b++) {
        for (int j = 0; j < BATCH; j++) {
            batch[j] = xmalloc(OBJ_SIZE);
            bench_touch(batch[j], OBJ_SIZE, (unsigned char)j);
        }
        for (int j = 0; j < BATCH; j++) {
            bench_check(batch[j], OBJ_SIZE, (unsigned char)j);
            free(batch[j]);
        }
    }
    double t2 = bench_now();

    uint64_t done = pair_ops + batches * BATCH;
    char extra[128];
    snprintf(extra, sizeof extra, " pair_ns=%.2f batch_ns=%.2f", pair_ops ? (t1 - t0) * 1e9 / (double)pair_ops : 0.0,
             batches ? (t2 - t1) * 1e9 / (double)(batches * BATCH) : 0.0);
    bench_result("tiny_hot", 1, t2 - t0, done, bench_rss_kb(), 0, extra);
    return 0;
}
