/* In-process observability (observe.c): HAKMEM_PROF, HAKMEM_TIMING,
 * HAKMEM_HIST_SAMPLE and the sampled-allocation probes. Slow paths only. */
#ifndef HAKMEM_OBSERVE_H
#define HAKMEM_OBSERVE_H

#include "hakmem_internal.h"
#include "probes.h"

enum hak_time_kind {
    HAK_TIME_REFILL = 0,
    HAK_TIME_L25 = 1,
    HAK_TIME_LARGE_MAP = 2,
    HAK_TIME_SS_MAP = 3,
    HAK_TIME_KINDS
};

extern bool hak_prof_on;
extern bool hak_timing_on;
extern uint32_t hak_hist_mask; /* UINT32_MAX: off */
extern size_t hak_sample_bytes;

void hak_observe_init(void);
void hak_observe_report(int fd);
/* A tracer is attached to sample_alloc/sample_free, or HAKMEM_PROF=1: two
 * semaphore loads, on slow paths only. */
static inline bool hak_sampling_active(void)
{
    return hak_prof_on || HAK_PROBE_ENABLED(sample_alloc) || HAK_PROBE_ENABLED(sample_free);
}
/* Charge the thread's countdown with `bytes` handed out; non-zero: sample
 * the allocation being served. */
/* The sample's weight (bytes it stands for), 0: not sampled. */
uint64_t hak_sample_charge(size_t bytes);
void hak_sample_alloc(void *p, size_t size, uint64_t weight, int tier);
/* size and weight as at its sample_alloc. */
void hak_sample_free(void *p, size_t size, uint64_t weight, int tier);
uint64_t hak_time_now_ns(void);
void hak_timing_record(int kind, uint64_t start_ns);
void hak_hist_record(int tier, size_t size, uint32_t blocks);

static inline uint64_t hak_timing_start(void)
{
    return HAK_UNLIKELY(hak_timing_on) ? hak_time_now_ns() : 0;
}

static inline void hak_timing_stop(int kind, uint64_t start_ns)
{
    if (HAK_UNLIKELY(start_ns != 0))
        hak_timing_record(kind, start_ns);
}

static inline void hak_hist(int tier, size_t size, uint32_t blocks)
{
    if (HAK_UNLIKELY(hak_hist_mask != UINT32_MAX))
        hak_hist_record(tier, size, blocks);
}

#endif
