/* tiny_bands: every Tiny size class in turn. For each band (<=8, <=16, ...,
 * <=1024 B) a working set of 4096 blocks is filled with sizes uniform within
 * the band and then random slots are replaced. Within a band the requests
 * hit a handful of neighbouring size classes, so this is the mixed-size
 * counterpart of tiny_hot (and the second instruction-count probe).
 * An op is one replacement (free + malloc); the fills are not counted. */
#include "bench_common.h"

#define SLOTS 4096
#define NBANDS 8

int main(int argc, char **argv)
{
    static const size_t band_max[NBANDS] = {8, 16, 32, 64, 128, 256, 512, 1024};
    struct bench_args a = bench_parse(argc, argv);
    uint64_t per_band = bench_ops(&a, 60000000ULL) / NBANDS;
    struct slot_set set;
    slots_init(&set, SLOTS);
    bench_rng r;
    rng_seed(&r, 1);
    char extra[NBANDS * 24] = "";
    size_t extra_len = 0;

    double t0 = bench_now();
    for (int b = 0; b < NBANDS; b++) {
        size_t lo = b == 0 ? 1 : band_max[b - 1] + 1, hi = band_max[b];
        double tb = bench_now();
        for (size_t i = 0; i < SLOTS; i++)
            slots_put(&set, i, rng_between(&r, lo, hi));
        for (uint64_t k = 0; k < per_band; k++)
            slots_put(&set, (size_t)rng_below(&r, SLOTS), rng_between(&r, lo, hi));
        if (b + 1 < NBANDS)
            slots_clear(&set);
        extra_len += (size_t)snprintf(extra + extra_len, sizeof extra - extra_len, " b%zu_ns=%.1f", hi,
                                      (bench_now() - tb) * 1e9 / (double)(per_band ? per_band : 1));
    }
    double seconds = bench_now() - t0;

    bench_result("tiny_bands", 1, seconds, per_band * NBANDS, bench_rss_kb(), set.live, extra);
    slots_destroy(&set);
    return 0;
}
