/* frag_stress: a long-running live set (~32 MiB) whose size mix drifts,
 * in the spirit of bench_fragment_stress_long and of the fragmentation
 * discussions around jemalloc. Each op either allocates (while the live
 * bytes are under the target) or frees a random live block, so lifetimes
 * are random and the live bytes stay level while the mix moves:
 *   first 30%  small: 16 B - 1 KiB
 *   30% - 60%  drift: the share of mid blocks (1 - 32 KiB) rises to 100%
 *   last 40%   mixed: 65% small, 30% mid, 5% L2.5 (32 - 256 KiB)
 * Small blocks that outlive the switch pin their slabs; a fragmenting
 * allocator's RSS climbs well above the live bytes and stays there.
 * Reports peak and end RSS with the live bytes (the harness's object
 * array purged past its live slots first), RSS at the end of each
 * stage, and with BENCH_RSS_TRACE=path writes "t_seconds rss_kb live_bytes"
 * samples (about 256 over the run, then one per 0.1 s of the idle sleep)
 * for the RSS-over-time plot.
 * Then it sleeps BENCH_IDLE_S (1.5 s, 0.5 below scale 0.5) calling
 * nothing, as a service does between bursts, and reports rss_idle_kb:
 * what the allocator kept of the end RSS once its decay had the time to
 * run. seconds covers the work, not the sleep. An op is one malloc or
 * one free. */
#include "bench_common.h"

#define TARGET_LIVE (32ULL << 20)
#define MAX_OBJECTS (TARGET_LIVE / 16 + 1024)
#define SAMPLES 256
#define IDLE_SAMPLES 128 /* one per 0.1 s slice of the idle sleep */

struct object {
    void *ptr;
    size_t size;
};

struct sample {
    double t;
    long rss_kb;
    uint64_t live;
};

/* Size class mix at progress p in [0, 1). */
static size_t pick_size(double p, bench_rng *r, const struct size_table *small, const struct size_table *mid,
                        const struct size_table *big)
{
    double u = rng_unit(r);
    if (p < 0.3)
        return size_table_pick(small, r);
    if (p < 0.6)
        return size_table_pick(u < (p - 0.3) / 0.3 ? mid : small, r);
    return size_table_pick(u < 0.65 ? small : u < 0.95 ? mid : big, r);
}

int main(int argc, char **argv)
{
    struct bench_args a = bench_parse(argc, argv);
    uint64_t ops = bench_ops(&a, 20000000ULL);
    const char *trace_path = getenv("BENCH_RSS_TRACE");
    double idle = bench_env_double("BENCH_IDLE_S", a.scale < 0.5 ? 0.5 : 1.5);
    struct size_table *tables = bench_map(3 * sizeof *tables);
    size_table_log_uniform(&tables[0], 16, 1024, 11);
    size_table_log_uniform(&tables[1], 1024, 32768, 12);
    size_table_log_uniform(&tables[2], 32768, 256 * 1024, 13);
    struct object *objs = bench_map(MAX_OBJECTS * sizeof *objs);
    struct sample *samples = bench_map((SAMPLES + IDLE_SAMPLES + 1) * sizeof *samples);
    size_t count = 0, nsamples = 0;
    uint64_t live = 0, sample_every = ops / SAMPLES ? ops / SAMPLES : 1;
    long rss_stage1 = 0, rss_stage2 = 0;
    bench_rng r;
    rng_seed(&r, 5);

    double t0 = bench_now();
    for (uint64_t k = 0; k < ops; k++) {
        double p = (double)k / (double)ops;
        if (live < TARGET_LIVE && count < MAX_OBJECTS) {
            size_t size = pick_size(p, &r, &tables[0], &tables[1], &tables[2]);
            void *ptr = xmalloc(size);
            bench_touch(ptr, size, (unsigned char)count);
            objs[count++] = (struct object){ptr, size};
            live += size;
        } else {
            size_t i = (size_t)rng_below(&r, count);
            free(objs[i].ptr);
            live -= objs[i].size;
            objs[i] = objs[--count];
        }
        if (trace_path && k % sample_every == 0 && nsamples < SAMPLES)
            samples[nsamples++] = (struct sample){bench_now() - t0, bench_rss_kb(), live};
        if (k + 1 == ops * 3 / 10)
            rss_stage1 = bench_rss_kb();
        else if (k + 1 == ops * 6 / 10)
            rss_stage2 = bench_rss_kb();
    }
    double seconds = bench_now() - t0;
    /* The object array's slots past the live objects: 2 MiB the harness
     * touched while the small blocks were 138 000, and no allocator's.
     * Returned before the end measurements, as phases unmaps its array. */
    bench_release_tail(objs, count * sizeof *objs, MAX_OBJECTS * sizeof *objs);
    long end_rss = bench_rss_kb();
    if (trace_path)
        samples[nsamples++] = (struct sample){seconds, end_rss, live};
    /* Slices, so that an allocator's timer-driven purging has wake-ups to
     * line up with; nothing here calls into the allocator (reading
     * /proc/self/status does not either). */
    for (double slept = 0; slept < idle; slept += 0.1) {
        bench_sleep(0.1);
        if (trace_path && nsamples < SAMPLES + IDLE_SAMPLES)
            samples[nsamples++] = (struct sample){seconds + slept + 0.1, bench_rss_kb(), live};
    }
    long idle_rss = bench_rss_kb();

    if (trace_path) {
        FILE *f = fopen(trace_path, "w");
        if (!f) {
            perror(trace_path);
            return 1;
        }
        for (size_t i = 0; i < nsamples; i++)
            fprintf(f, "%.4f %ld %llu\n", samples[i].t, samples[i].rss_kb, (unsigned long long)samples[i].live);
        fclose(f);
    }
    char extra[192];
    snprintf(extra, sizeof extra, " rss_small_kb=%ld rss_mid_kb=%ld rss_idle_kb=%ld idle_seconds=%.1f objects=%zu",
             rss_stage1, rss_stage2, idle_rss, idle, count);
    bench_result("frag_stress", 1, seconds, ops, end_rss, live, extra);
    return 0;
}
