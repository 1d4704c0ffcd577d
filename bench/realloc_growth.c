/* realloc_growth: many independent buffers growing by appends, the way
 * string builders and dynamic arrays grow.
 *   strings  256 buffers; each append adds 1-64 bytes and reallocs to the
 *            exact new length (naive string code), up to a target length
 *            log-uniform in 64 B - 256 KiB; then the buffer is freed
 *   vectors  64 arrays of 8 B elements; capacity grows by 1.5x when full, up
 *            to a target log-uniform in 16 - 512 Ki elements (128 B - 4 MiB)
 * Appends go to a random buffer, so the growing blocks interleave in the
 * heap: an allocator can only grow in place if it keeps room behind them,
 * and big ones cross the Mid, L2.5 and Large tiers (mremap helps there).
 * An op is one append (ops/realloc_calls gives the realloc share). */
#include "bench_common.h"

#define NSTRINGS 256
#define NVECTORS 64

struct buf {
    unsigned char *data;
    size_t len, cap, target; /* vectors: in elements; strings: in bytes */
};

static size_t log_uniform(bench_rng *r, size_t lo, size_t hi)
{
    return (size_t)((double)lo * exp(log((double)hi / (double)lo) * rng_unit(r)));
}

static void finish(struct buf *b, size_t elem)
{
    if (b->data) {
        bench_check(b->data, b->len * elem, b->data[0]);
        free(b->data);
    }
    b->data = NULL;
    b->len = b->cap = 0;
}

int main(int argc, char **argv)
{
    struct bench_args a = bench_parse(argc, argv);
    uint64_t ops = bench_ops(&a, 8000000ULL);
    struct buf *strings = bench_map(NSTRINGS * sizeof *strings);
    struct buf *vectors = bench_map(NVECTORS * sizeof *vectors);
    bench_rng r;
    rng_seed(&r, 3);
    uint64_t reallocs = 0, completed = 0;

    double t0 = bench_now();
    for (uint64_t k = 0; k < ops; k++) {
        uint64_t pick = rng_below(&r, NSTRINGS + NVECTORS);
        if (pick < NSTRINGS) {
            struct buf *s = &strings[pick];
            if (!s->data)
                s->target = log_uniform(&r, 64, 256 * 1024);
            size_t add = rng_between(&r, 1, 64);
            s->data = xrealloc(s->data, s->len + add);
            reallocs++;
            /* Every byte repeats the first one, so the final check sees
             * whether the contents survived each move. */
            memset(s->data + s->len, s->len ? s->data[0] : (unsigned char)k | 1, add);
            s->len += add;
            if (s->len >= s->target) {
                finish(s, 1);
                completed++;
            }
        } else {
            struct buf *v = &vectors[pick - NSTRINGS];
            if (!v->data)
                v->target = log_uniform(&r, 16, 512 * 1024);
            if (v->len == v->cap) {
                v->cap = v->cap + v->cap / 2 + 4;
                v->data = xrealloc(v->data, v->cap * sizeof(uint64_t));
                reallocs++;
            }
            uint64_t value = v->len ? ((uint64_t *)v->data)[0] : (k & 0xff) * 0x0101010101010101ULL;
            ((uint64_t *)v->data)[v->len++] = value;
            if (v->len >= v->target) {
                finish(v, sizeof(uint64_t));
                completed++;
            }
        }
    }
    double seconds = bench_now() - t0;

    uint64_t live = 0;
    for (int i = 0; i < NSTRINGS; i++)
        live += strings[i].len;
    for (int i = 0; i < NVECTORS; i++)
        live += vectors[i].cap * sizeof(uint64_t);
    char extra[96];
    snprintf(extra, sizeof extra, " realloc_calls=%llu buffers_completed=%llu", (unsigned long long)reallocs,
             (unsigned long long)completed);
    bench_result("realloc_growth", 1, seconds, ops, bench_rss_kb(), live, extra);
    for (int i = 0; i < NSTRINGS; i++)
        finish(&strings[i], 1);
    for (int i = 0; i < NVECTORS; i++)
        finish(&vectors[i], sizeof(uint64_t));
    return 0;
}
