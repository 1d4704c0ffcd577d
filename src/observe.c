/* In-process observability, for people who cannot attach a tracer (no
 * root, a container): HAKMEM_PROF, HAKMEM_TIMING and HAKMEM_HIST_SAMPLE
 * print at exit what the probes would have shown, built from the same
 * slow-path events. Each costs nothing unless its variable is set: the
 * hooks below sit on slow paths only, behind one predictable branch.
 *
 * Sampled allocations (probes sample_alloc / sample_free, HAKMEM_PROF): on
 * average one allocation per HAKMEM_SAMPLE_BYTES bytes allocated is
 * sampled. The fast path never counts: each slow path charges a per-thread
 * countdown with the bytes it hands out (a Tiny/Mid refill: its blocks; an
 * L25 or Large allocation: its size) and samples the allocation it is
 * serving when the countdown runs out. A sampled Tiny/Mid allocation is
 * served by the Large tier, so that its free is seen too (the Tiny free
 * path has no probe); an L25 or Large one is flagged in place. Sampling
 * runs only while a tracer is attached to sample_alloc (its semaphore) or
 * HAKMEM_PROF=1. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "hakmem_internal.h"
#include "observe.h"
#include "probes.h"

bool hak_prof_on;
bool hak_timing_on;
uint32_t hak_hist_mask = UINT32_MAX; /* HIST_SAMPLE off */
size_t hak_sample_bytes;

static HAK_TLS int64_t sample_left;
static HAK_TLS uint64_t sample_acc; /* bytes charged since the last sample */
static HAK_TLS uint64_t sample_rng;
static HAK_TLS uint32_t hist_tick;

/* PROF: by tier, sampled allocations and frees (each stands for
 * hak_sample_bytes allocated), and a log2 histogram of sampled sizes. */
static _Atomic uint64_t prof_allocs[5], prof_frees[5];
static _Atomic uint64_t prof_alloc_weight[5], prof_live_weight[5];
static _Atomic uint64_t prof_size_log2[64];
static _Atomic uint64_t prof_live_size_log2[64];

/* TIMING: per slow-path kind, a log2 histogram of nanoseconds. */
static const char *const timing_names[HAK_TIME_KINDS] = {"tiny/mid refill", "l25 pool", "large map", "superslab map"};
static _Atomic uint64_t timing_count[HAK_TIME_KINDS], timing_total_ns[HAK_TIME_KINDS];
static _Atomic uint64_t timing_max_ns[HAK_TIME_KINDS], timing_hist[HAK_TIME_KINDS][40];

/* HIST_SAMPLE: allocations by tier and size class (estimated: sampled
 * events times 2^N). */
static _Atomic uint64_t hist_blocks[5][64];
static _Atomic uint64_t hist_events;

void hak_observe_init(void)
{
    hak_prof_on = hak_cfg_int(HAK_CFG_PROF) != 0;
    hak_timing_on = hak_cfg_int(HAK_CFG_TIMING) != 0;
    long long hist = hak_cfg_int(HAK_CFG_HIST_SAMPLE);
    if (hist > 0) /* N: one slow-path event in 2^(N-1) */
        hak_hist_mask = (1u << (hist - 1)) - 1;
    hak_sample_bytes = (size_t)hak_cfg_int(HAK_CFG_SAMPLE_BYTES);
}

/* Intervals drawn uniformly from [N/2, 3N/2): a fixed interval would pick
 * the same call site forever in a loop whose bytes divide N. */
static int64_t next_interval(void)
{
    if (!sample_rng)
        sample_rng = (uint64_t)(uintptr_t)&sample_rng * 0x9E3779B97F4A7C15ull | 1;
    sample_rng ^= sample_rng << 13;
    sample_rng ^= sample_rng >> 7;
    sample_rng ^= sample_rng << 17;
    return (int64_t)(hak_sample_bytes / 2 + sample_rng % hak_sample_bytes);
}

uint64_t hak_sample_charge(size_t bytes)
{
    if (!sample_left && !sample_acc)
        sample_left = next_interval(); /* the thread's first charge */
    sample_acc += bytes;
    sample_left -= (int64_t)bytes;
    if (sample_left > 0)
        return 0;
    /* The sample stands for every byte since the last one: a 100 MiB block
     * sampled weighs 100 MiB, not one interval. */
    uint64_t weight = sample_acc;
    sample_acc = 0;
    sample_left = next_interval();
    return weight;
}

static unsigned log2_floor(uint64_t v)
{
    return v ? 63u - (unsigned)__builtin_clzll(v) : 0;
}

void hak_sample_alloc(void *p, size_t size, uint64_t weight, int tier)
{
    HAK_PROBE(sample_alloc, p, size, weight, tier);
    if (hak_prof_on) {
        atomic_fetch_add_explicit(&prof_allocs[tier], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&prof_alloc_weight[tier], weight, memory_order_relaxed);
        atomic_fetch_add_explicit(&prof_live_weight[tier], weight, memory_order_relaxed);
        atomic_fetch_add_explicit(&prof_size_log2[log2_floor(size)], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&prof_live_size_log2[log2_floor(size)], 1, memory_order_relaxed);
    }
}

void hak_sample_free(void *p, size_t size, uint64_t weight, int tier)
{
    HAK_PROBE(sample_free, p, size, tier);
    if (hak_prof_on) {
        atomic_fetch_add_explicit(&prof_frees[tier], 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&prof_live_weight[tier], weight, memory_order_relaxed);
        atomic_fetch_sub_explicit(&prof_live_size_log2[log2_floor(size)], 1, memory_order_relaxed);
    }
}

uint64_t hak_time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void hak_timing_record(int kind, uint64_t start_ns)
{
    uint64_t ns = hak_time_now_ns() - start_ns;
    atomic_fetch_add_explicit(&timing_count[kind], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&timing_total_ns[kind], ns, memory_order_relaxed);
    unsigned b = log2_floor(ns);
    atomic_fetch_add_explicit(&timing_hist[kind][b < 40 ? b : 39], 1, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&timing_max_ns[kind], memory_order_relaxed);
    while (ns > max && !atomic_compare_exchange_weak(&timing_max_ns[kind], &max, ns))
        ;
}

void hak_hist_record(int tier, size_t size, uint32_t blocks)
{
    if ((hist_tick++ & hak_hist_mask) != 0)
        return;
    atomic_fetch_add_explicit(&hist_events, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist_blocks[tier][log2_floor(size)], blocks, memory_order_relaxed);
}

static const char *const tier_names[5] = {"meta", "tiny", "mid", "l25", "large"};

static void human_bytes(char *out, size_t len, double bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, len, "%.1f %s", bytes, units[u]);
}

void hak_observe_report(int fd)
{
    if (hak_prof_on) {
        /* Frees first: other threads may still run, and a free counted
         * before its allocation would make the difference wrap. */
        uint64_t allocs = 0, frees = 0, weight = 0;
        int64_t live_weight = 0;
        for (int t = 0; t < 5; t++) {
            frees += atomic_load(&prof_frees[t]);
            live_weight += (int64_t)atomic_load(&prof_live_weight[t]);
            allocs += atomic_load(&prof_allocs[t]);
            weight += atomic_load(&prof_alloc_weight[t]);
        }
        uint64_t live_samples = allocs > frees ? allocs - frees : 0;
        char total[32], live[32];
        human_bytes(total, sizeof total, (double)weight);
        human_bytes(live, sizeof live, live_weight > 0 ? (double)live_weight : 0.0);
        hak_fdprintf(fd,
                     "hakmem: prof: %llu sampled allocations (one per %zu bytes on average): about %s allocated, "
                     "%llu samples still live at exit (about %s not freed)\n",
                     (unsigned long long)allocs, hak_sample_bytes, total, (unsigned long long)live_samples, live);
        for (int t = 0; t < 5; t++) {
            uint64_t f = atomic_load(&prof_frees[t]), a = atomic_load(&prof_allocs[t]);
            if (a >= f && a)
                hak_fdprintf(fd, "hakmem: prof:   %-5s %llu sampled, %llu freed, %llu live\n", tier_names[t],
                             (unsigned long long)a, (unsigned long long)f, (unsigned long long)(a - f));
        }
        for (int b = 0; b < 64; b++) {
            uint64_t n = atomic_load(&prof_live_size_log2[b]);
            if (n)
                hak_fdprintf(fd, "hakmem: prof:   live samples of %llu-%llu bytes: %llu\n", 1ull << b, (2ull << b) - 1,
                             (unsigned long long)n);
        }
    }
    if (hak_timing_on) {
        for (int k = 0; k < HAK_TIME_KINDS; k++) {
            uint64_t n = atomic_load(&timing_count[k]);
            if (!n)
                continue;
            hak_fdprintf(fd, "hakmem: timing: %s: %llu calls, mean %llu ns, max %llu ns\n", timing_names[k],
                         (unsigned long long)n, (unsigned long long)(atomic_load(&timing_total_ns[k]) / n),
                         (unsigned long long)atomic_load(&timing_max_ns[k]));
            for (int b = 0; b < 40; b++) {
                uint64_t c = atomic_load(&timing_hist[k][b]);
                if (c)
                    hak_fdprintf(fd, "hakmem: timing:   %8llu - %8llu ns: %llu\n", 1ull << b, (2ull << b) - 1,
                                 (unsigned long long)c);
            }
        }
    }
    if (hak_hist_mask != UINT32_MAX) {
        hak_fdprintf(fd, "hakmem: hist: %llu slow-path events sampled (one in %u); blocks handed out by size:\n",
                     (unsigned long long)atomic_load(&hist_events), hak_hist_mask + 1);
        for (int t = 0; t < 5; t++)
            for (int b = 0; b < 64; b++) {
                uint64_t n = atomic_load(&hist_blocks[t][b]);
                if (n)
                    hak_fdprintf(fd, "hakmem: hist:   %-5s %8llu-%llu bytes: about %llu blocks\n", tier_names[t],
                                 1ull << b, (2ull << b) - 1, (unsigned long long)n * (hak_hist_mask + 1ull));
            }
    }
}
