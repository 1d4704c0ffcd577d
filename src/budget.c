/* HAKMEM_TINY_RSS_BUDGET_KB: a bound on the allocator's resident memory.
 *
 * The slow paths call hak_budget_check(); at most every CHECK_MS it reads
 * the resident estimate every tier keeps (mapped - purged: what the os_*
 * probes add up to) and, over the budget:
 *   1. purges every free page now (SuperSlab dirty slabs, L25 free spans,
 *      the BigCache), as malloc_trim(0) would, minus the thread caches;
 *   2. still over: a diet step cuts every class's thread-cache capacity by
 *      HAKMEM_TINY_DIET_STEP blocks (never below HAKMEM_TINY_CAP_FLOOR_Cn);
 *      each thread hands its cache back at its next slow-path allocation
 *      (probe diet_step);
 *   3. caches at their floors and still over: the budget cannot be met (the
 *      live data is above it). Probe budget_exceeded, counter
 *      budget_exceeded; allocation goes on.
 * Under 3/4 of the budget, one diet level is relaxed per check. */
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "config.h"
#include "hakmem_internal.h"
#include "l25.h"
#include "probes.h"
#include "superslab.h"

#define CHECK_MS 10
#define UNMET_RETRY_MS 1000

static size_t budget_bytes;
static bool decay_thread_wanted;
static uint32_t decay_interval_ms;
static uint32_t diet_step;
static _Atomic uint32_t last_check_ms;
static _Atomic int checking;
static uint32_t unmet_since; /* when the budget was last found out of reach (under `checking`) */

void hak_budget_init(void)
{
    if (hak_cfg_is_set(HAK_CFG_TINY_RSS_BUDGET_KB))
        budget_bytes = (size_t)hak_cfg_int(HAK_CFG_TINY_RSS_BUDGET_KB) * HAK_KiB;
    diet_step = (uint32_t)hak_cfg_int(HAK_CFG_TINY_DIET_STEP);
    decay_thread_wanted = hak_cfg_int(HAK_CFG_DECAY_THREAD) != 0;
    long long decay = hak_cfg_int(HAK_CFG_TINY_DECAY_MS);
    long long big_decay = hak_cfg_int(HAK_CFG_BIGCACHE_DECAY_MS);
    long long interval = (decay < big_decay ? decay : big_decay) / 2;
    decay_interval_ms = (uint32_t)(interval < 50 ? 50 : interval > 1000 ? 1000 : interval);
}

static size_t resident_estimate(void)
{
    uint64_t mapped = atomic_load_explicit(&hak_counters.mapped_bytes, memory_order_relaxed);
    uint64_t purged = atomic_load_explicit(&hak_counters.purged_bytes, memory_order_relaxed);
    return mapped > purged ? (size_t)(mapped - purged) : 0;
}

/* Decay in every tier, from whichever tier's slow path runs: a program
 * that stopped using one tier still gets that tier's free memory purged
 * once it has been idle for the decay time. At most every DECAY_TICK_MS;
 * called with no hakmem lock held. */
#define DECAY_TICK_MS 50
static _Atomic uint32_t last_decay_ms;

/* The decay thread (HAKMEM_DECAY_THREAD=1, the default): without it, free
 * memory waits for the program's next allocation call to be purged, so a
 * program that frees most of its memory and then goes quiet keeps it
 * (bench phases: 11.5 MB resident after freeing all but 73 KB, glibc 3.4).
 * Started by the first maintenance call (from a slow path, no lock held:
 * pthread_create allocates); it wakes every half decay time, clamped to
 * 50 ms .. 1 s, runs the decay of every tier and the budget check, and
 * never allocates. A fork child starts its own at its first slow path. */
static _Atomic int decay_thread_state; /* 0 not started, 1 starting or running, 2 failed */

static void decay_all_tiers(void)
{
    hak_ss_decay();
    hak_l25_decay();
    hak_large_decay();
}

static void *decay_thread_main(void *arg)
{
    (void)arg;
    struct timespec pause = {decay_interval_ms / 1000, (long)(decay_interval_ms % 1000) * 1000000L};
    for (;;) {
        nanosleep(&pause, NULL);
        /* Threads that made no slow-path call for a whole tick: their
         * caches go back first, so that this pass purges them. */
        hak_small_reclaim_idle();
        hak_l25_reclaim_idle();
        decay_all_tiers();
        if (budget_bytes)
            hak_budget_check((uint32_t)hak_now_ms());
    }
    return NULL;
}

static void start_decay_thread(void)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&decay_thread_state, &expected, 1))
        return;
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    /* Every signal blocked in the thread: the program's signals must reach
     * its own threads, and a handler must never run while the decay thread
     * holds a tier lock. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&thread, &attr, decay_thread_main, NULL) != 0)
        atomic_store(&decay_thread_state, 2);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

void hak_decay_thread_after_fork(void)
{
    atomic_store(&decay_thread_state, 0);
    atomic_store(&checking, 0);
}

void hak_maintenance(void)
{
    /* Re-entered from a signal handler (or a nested call) while this thread
     * is inside a tier: its locks may be held here. */
    if (hak_small_busy() || hak_l25_busy())
        return;
    if (HAK_UNLIKELY(decay_thread_wanted && atomic_load_explicit(&decay_thread_state, memory_order_relaxed) == 0))
        start_decay_thread();
    uint32_t now = (uint32_t)hak_now_ms();
    uint32_t last = atomic_load_explicit(&last_decay_ms, memory_order_relaxed);
    if (now - last >= DECAY_TICK_MS && atomic_compare_exchange_strong(&last_decay_ms, &last, now))
        decay_all_tiers();
    if (budget_bytes)
        hak_budget_check(now);
}

void hak_budget_check(uint32_t now)
{
    uint32_t last = atomic_load_explicit(&last_check_ms, memory_order_relaxed);
    if (now - last < CHECK_MS || !atomic_compare_exchange_strong(&last_check_ms, &last, now))
        return;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&checking, &idle, 1))
        return;
    size_t resident = resident_estimate();
    /* Once the budget has been found out of reach, purging everything at
     * every check would only make the live program refault: the purge
     * and diet wait UNMET_RETRY_MS before trying again. */
    if (resident > budget_bytes && unmet_since && now - unmet_since < UNMET_RETRY_MS) {
        HAK_COUNT(budget_exceeded, 1);
        HAK_PROBE(budget_exceeded, resident, budget_bytes);
        atomic_store_explicit(&checking, 0, memory_order_release);
        return;
    }
    unmet_since = 0;
    if (resident > budget_bytes) {
        hak_ss_trim();
        hak_l25_purge_all();
        hak_large_trim();
        resident = resident_estimate();
    }
    if (resident > budget_bytes) {
        long cut = hak_small_diet(diet_step, false);
        if (cut >= 0) {
            HAK_COUNT(diet_steps, 1);
            HAK_PROBE(diet_step, resident, budget_bytes, cut);
        } else {
            HAK_COUNT(budget_exceeded, 1);
            HAK_PROBE(budget_exceeded, resident, budget_bytes);
            unmet_since = now ? now : 1;
        }
    } else if (resident < budget_bytes / 4 * 3) {
        long cut = hak_small_diet(diet_step, true);
        if (cut >= 0)
            HAK_PROBE(diet_step, resident, budget_bytes, cut);
    }
    atomic_store_explicit(&checking, 0, memory_order_release);
}
