/* xthread_prodcons: every free is a remote free. Each producer thread
 * allocates batches of small blocks (8 B - 1 KiB, log-uniform) and passes
 * them through a bounded single-producer/single-consumer ring to its own
 * consumer thread, which checks and frees them. This is the xmalloc-test /
 * prodcons pattern of mimalloc-bench: memory flows one way between threads,
 * so an allocator must send freed blocks home (or adopt them) without a lock
 * on every free and without letting the producer's heap grow unbounded.
 * threads=N means N producer/consumer pairs (2N threads). An op is one block
 * allocated by the producer and freed by the consumer. */
#include <sched.h>
#include <stdatomic.h>

#include "bench_common.h"

#define BATCH 64
#define RING 64 /* batches in flight per pair; a power of two */

struct batch {
    void *obj[BATCH];
    uint32_t size[BATCH];
};

struct pair {
    _Alignas(64) _Atomic uint64_t head; /* next batch to consume */
    _Alignas(64) _Atomic uint64_t tail; /* next free ring slot */
    _Alignas(64) struct batch *ring[RING];
    const struct size_table *sizes;
    uint64_t batches;
    int index;
};

/* Spin briefly, then yield: with more threads than cores a pure spin would
 * burn the time slice the other side needs to make progress. */
static void backoff(unsigned *spins)
{
    if (++*spins > 64) {
        sched_yield();
        *spins = 0;
    }
}

static void *producer(void *arg)
{
    struct pair *p = arg;
    bench_rng r;
    rng_seed(&r, (uint64_t)p->index + 1);
    for (uint64_t n = 0; n < p->batches; n++) {
        struct batch *b = xmalloc(sizeof *b);
        for (int j = 0; j < BATCH; j++) {
            size_t size = size_table_pick(p->sizes, &r);
            b->obj[j] = xmalloc(size);
            b->size[j] = (uint32_t)size;
            bench_touch(b->obj[j], size, (unsigned char)j);
        }
        uint64_t tail = atomic_load_explicit(&p->tail, memory_order_relaxed);
        unsigned spins = 0;
        while (tail - atomic_load_explicit(&p->head, memory_order_acquire) == RING)
            backoff(&spins);
        p->ring[tail % RING] = b;
        atomic_store_explicit(&p->tail, tail + 1, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct pair *p = arg;
    for (uint64_t n = 0; n < p->batches; n++) {
        unsigned spins = 0;
        while (atomic_load_explicit(&p->tail, memory_order_acquire) == n)
            backoff(&spins);
        struct batch *b = p->ring[n % RING];
        atomic_store_explicit(&p->head, n + 1, memory_order_release);
        for (int j = 0; j < BATCH; j++) {
            bench_check(b->obj[j], b->size[j], (unsigned char)j);
            free(b->obj[j]);
        }
        free(b);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct bench_args a = bench_parse(argc, argv);
    uint64_t batches = bench_ops(&a, 8000000ULL) / BATCH;
    int n = a.threads;
    struct size_table *sizes = bench_map(sizeof *sizes);
    size_table_log_uniform(sizes, 8, 1024, 7);
    struct pair *pairs = bench_map((size_t)n * sizeof *pairs);
    pthread_t *tids = bench_map((size_t)n * 2 * sizeof *tids);
    for (int i = 0; i < n; i++) {
        pairs[i].sizes = sizes;
        pairs[i].batches = batches / (uint64_t)n + ((uint64_t)i < batches % (uint64_t)n);
        pairs[i].index = i;
    }

    double t0 = bench_now();
    bench_spawn(tids, n, consumer, pairs, sizeof *pairs);
    bench_spawn(tids + n, n, producer, pairs, sizeof *pairs);
    bench_join(tids, 2 * n);
    double seconds = bench_now() - t0;

    uint64_t ops = batches * BATCH;
    char extra[64];
    snprintf(extra, sizeof extra, " ns_per_op=%.1f", seconds * 1e9 / (double)(ops ? ops : 1));
    bench_result("xthread_prodcons", n, seconds, ops, bench_rss_kb(), 0, extra);
    return 0;
}
