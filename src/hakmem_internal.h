/* Declarations shared between hakmem's source files. Nothing here is
 * exported from the library. */
#ifndef HAKMEM_INTERNAL_H
#define HAKMEM_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "hakmem.h"

#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_INLINE static inline __attribute__((always_inline))
#define HAK_NOINLINE __attribute__((noinline))
#define HAK_COLD __attribute__((cold, noinline))
#define HAK_EXPORT __attribute__((visibility("default")))
/* Initial-exec TLS: general-dynamic goes through __tls_get_addr, which
 * costs on every access and can itself allocate. */
#define HAK_TLS __thread __attribute__((tls_model("initial-exec")))

/* ThreadSanitizer (the test suite's clang build) does not see the %fs
 * accesses of the thread cache's fast paths, nor the membarrier that
 * orders them against the decay thread: these tell it the happens-before
 * edges that the handshake gives (hak_mid_pop, hak_small_reclaim_idle). */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HAK_TSAN 1
#endif
#endif
#if defined(HAK_TSAN)
#include <sanitizer/tsan_interface.h>
#define HAK_TSAN_RELEASE(addr) __tsan_release((void *)(addr))
#define HAK_TSAN_ACQUIRE(addr) __tsan_acquire((void *)(addr))
/* Reads of another thread's cache that are racy by design. */
#define HAK_RACY_READS __attribute__((no_sanitize("thread")))
#else
#define HAK_TSAN_RELEASE(addr) ((void)0)
#define HAK_TSAN_ACQUIRE(addr) ((void)0)
#define HAK_RACY_READS
#endif

#define HAK_KiB ((size_t)1024)
#define HAK_MiB ((size_t)1024 * 1024)
#define HAK_PAGE ((size_t)4096)

/* The alignment malloc guarantees for requests of 16 bytes or more. */
#define HAK_MIN_ALIGN 16

/* Tier boundaries. Sizes up to HAK_SMALL_MAX are served from SuperSlab
 * slabs (the Tiny bands C0..C7 cover <= 1 KiB; 1-32 KiB shares the same
 * machinery until the Mid pool lands); everything above is Large. */
#define HAK_TINY_MAX ((size_t)1024)
#define HAK_SMALL_MAX ((size_t)32 * 1024)
/* The L25 pool: HAK_SMALL_MAX < size <= HAK_L25_MAX (l25.c). */
#define HAK_L25_MAX ((size_t)1024 * 1024)

#ifndef HAKMEM_BUILD_DEBUG
#define HAKMEM_BUILD_DEBUG 0
#endif
#ifndef HAKMEM_ENABLE_STATS
#define HAKMEM_ENABLE_STATS 0
#endif

/* Milliseconds of CLOCK_MONOTONIC_COARSE (a vDSO read, no syscall): the
 * clock of every decay timer. Callers that keep 32-bit stamps compare
 * them by unsigned difference, so the wrap every 49 days is harmless. */
static inline uint64_t hak_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline size_t hak_align_up(size_t n, size_t a)
{
    return (n + a - 1) & ~(a - 1);
}

/* ---- log.c: output that never allocates ---- */
void hak_log_set_fd(int fd);
int hak_log_fd(void);
void hak_log_quiet(bool quiet);
/* printf-like; a line prefixed "hakmem: " is written with one write(2).
 * Warnings are dropped under HAKMEM_QUIET=1. */
void hak_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hak_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hak_fdprintf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report a misuse of the API (invalid free, ...) and carry on. */
void hak_report_misuse(const char *what, const void *p);
_Noreturn void hak_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- os.c: the only place that maps, unmaps and purges ---- */
void *hak_os_map(size_t bytes, int tier);
void *hak_os_map_aligned(size_t bytes, size_t align, int tier);
void hak_os_unmap(void *p, size_t bytes, int tier);
void hak_os_purge(void *p, size_t bytes, int tier);
/* Never-touched pages: counted as purged, no madvise. */
void hak_os_purge_accounting(void *p, size_t bytes, int tier);
/* The pages of a purged range became resident again (accounting only). */
void hak_os_unpurge(void *p, size_t bytes, int tier);
void hak_os_hugepage(void *p, size_t bytes, bool on);

/* ---- stats.c: counters every build keeps (slow paths only) ---- */
struct hak_counters {
    _Atomic uint64_t mapped_bytes;
    _Atomic uint64_t purged_bytes;
    _Atomic uint64_t os_map_calls;
    _Atomic uint64_t os_unmap_calls;
    _Atomic uint64_t os_purge_calls;
    _Atomic uint64_t superslabs;
    _Atomic uint64_t tiny_refills;
    _Atomic uint64_t tiny_spills;
    _Atomic uint64_t large_live;
    _Atomic uint64_t large_live_bytes;
    _Atomic uint64_t bigcache_hits;
    _Atomic uint64_t bigcache_misses;
    _Atomic uint64_t bigcache_bytes;
    _Atomic uint64_t config_rejected;
    _Atomic uint64_t threads_live;
    _Atomic uint64_t threads_exited;
    _Atomic uint64_t malloc_calls;
    _Atomic uint64_t free_calls;
    _Atomic uint64_t tiny_hits;
    _Atomic uint64_t tiny_fallbacks;
    _Atomic uint64_t tiny_remote_drained;
    _Atomic uint64_t tiny_adopted;
    _Atomic uint64_t tiny_abandoned;
    _Atomic uint64_t os_purge_events;
    _Atomic uint64_t mid_refills;
    _Atomic uint64_t mid_spills;
    _Atomic uint64_t mid_fallbacks;
    _Atomic uint64_t mid_ring_flushes;
    _Atomic uint64_t tier_mapped[5]; /* by enum hak_probe_tier_code */
    _Atomic uint64_t tier_purged[5];
    _Atomic uint64_t l25_live_bytes;
    _Atomic uint64_t l25_free_resident;
    _Atomic uint64_t l25_chunks;
    _Atomic uint64_t l25_refills;
    _Atomic uint64_t l25_fallbacks;
    _Atomic uint64_t budget_exceeded;
    _Atomic uint64_t diet_steps;
    _Atomic uint64_t decay_purged_bytes;
    _Atomic uint64_t scavenged_bytes;
};
extern struct hak_counters hak_counters;
#define HAK_COUNT(field, n) atomic_fetch_add_explicit(&hak_counters.field, (n), memory_order_relaxed)
#define HAK_UNCOUNT(field, n) atomic_fetch_sub_explicit(&hak_counters.field, (n), memory_order_relaxed)

/* ---- init.c ---- */
extern _Atomic int hak_init_state; /* 0 = not yet, 1 = running, 2 = done */
void hak_init_slow(void);
HAK_INLINE void hak_ensure_init(void)
{
    if (HAK_UNLIKELY(atomic_load_explicit(&hak_init_state, memory_order_acquire) != 2))
        hak_init_slow();
}
/* While a thread initialises hakmem, its own allocations come from a
 * small static arena: nothing in initialisation can recurse into a tier
 * that is not ready. */
bool hak_in_bootstrap(void);
void *hak_boot_alloc(size_t size, size_t align);
bool hak_is_boot_ptr(const void *p);
size_t hak_boot_usable(const void *p);
void hak_thread_register(void);

/* ---- superslab.c / tiny.c: SuperSlab-backed small sizes ---- */
void hak_small_init(void);
bool hak_ss_owns(const void *p);
void *hak_small_alloc(size_t size);
void *hak_small_alloc_aligned(size_t size, size_t align);
void hak_small_free(void *p);
size_t hak_small_usable(const void *p);
bool hak_small_is_live(const void *p);
void hak_small_thread_flush(bool exiting, uint64_t *blocks, uint64_t *bytes);
size_t hak_small_trim(void);
long hak_small_diet(uint32_t step, bool up);
/* The thread is inside the Tiny/Mid slow path (a signal handler's malloc
 * must not take tier locks then). */
bool hak_small_busy(void);
/* budget.c: HAKMEM_TINY_RSS_BUDGET_KB, checked from the slow paths. */
void hak_budget_init(void);
void hak_budget_check(uint32_t now_ms);
/* Decay ticks of every tier and the budget check, rate-limited; call with
 * no hakmem lock held. */
void hak_maintenance(void);
void hak_decay_thread_after_fork(void);
void hak_small_lock_all(void);
void hak_small_unlock_all(void);
void hak_small_reset_after_fork(void);
/* Decay thread: the caches of threads idle for a tick go back (tiny.c,
 * l25.c). */
void hak_small_reclaim_idle(void);
void hak_l25_reclaim_idle(void);
/* The heavy half of an asymmetric fence (membarrier, os.c): every thread
 * of the process runs a full barrier before it returns. False when the
 * kernel refuses it. */
bool hak_membarrier(void);

/* The idle gate of a thread's caches (a SuperSlab heap, an L25 cache): the
 * thread passes it on entering the paths that edit them (hak_gate_enter,
 * with its busy flag), and the decay thread closes it to hand back the
 * caches of a thread that has not passed it for a whole tick. A Dekker
 * handshake whose heavy half is the decay thread's hak_membarrier: the
 * thread's store of busy and load of `closed` need no fence, and either
 * the decay thread sees busy and leaves the caches alone, or the thread
 * sees `closed` and waits for the gate to open. */
struct hak_idle_gate {
    _Atomic uint32_t closed;
    _Atomic uint32_t entries;
    uint32_t entries_seen, entries_reclaimed; /* the decay thread's, under the owner list's lock
                                                 (a recycled heap's start from its last thread's:
                                                 at worst one tick later) */
    /* A digest of what the fast paths change (the SuperSlab heap's SLL
     * heads and rooms), at the last tick and at the last reclaim: a thread
     * busy on its fast paths alone is not idle. */
    uint64_t fronts_seen, fronts_reclaimed;
};

void hak_gate_wait(struct hak_idle_gate *gate);
/* A waiter's pause in its `round`-th round: sched_yield, then short naps. */
void hak_backoff(unsigned round);

static inline void hak_gate_enter(_Atomic uint8_t *busy, struct hak_idle_gate *gate)
{
    atomic_store_explicit(busy, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    if (HAK_UNLIKELY(atomic_load_explicit(&gate->closed, memory_order_acquire)))
        hak_gate_wait(gate);
    atomic_store_explicit(&gate->entries, atomic_load_explicit(&gate->entries, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline void hak_gate_leave(_Atomic uint8_t *busy)
{
    atomic_store_explicit(busy, 0, memory_order_release);
}

/* Decay thread: close the gate of caches not entered, and whose fast-path
 * digest `fronts` did not change, since the last tick (and not reclaimed
 * since); true when closed. Then one hak_membarrier for all, then
 * hak_gate_owned for each, then hak_gate_open. */
static inline bool hak_gate_close_if_quiet(struct hak_idle_gate *gate, uint64_t fronts)
{
    uint32_t entries = atomic_load_explicit(&gate->entries, memory_order_relaxed);
    bool quiet = entries == gate->entries_seen && fronts == gate->fronts_seen;
    gate->entries_seen = entries;
    gate->fronts_seen = fronts;
    if (!quiet || (entries == gate->entries_reclaimed && fronts == gate->fronts_reclaimed))
        return false;
    atomic_store_explicit(&gate->closed, 1, memory_order_relaxed);
    return true;
}

/* After the membarrier: the thread is outside (acquire: its last pass
 * happens before what the decay thread does next). */
static inline bool hak_gate_owned(_Atomic uint8_t *busy)
{
    return !atomic_load_explicit(busy, memory_order_acquire);
}

static inline void hak_gate_open(struct hak_idle_gate *gate, bool reclaimed)
{
    if (reclaimed) {
        gate->entries_reclaimed = gate->entries_seen;
        gate->fronts_reclaimed = gate->fronts_seen;
    }
    atomic_store_explicit(&gate->closed, 0, memory_order_release);
}
/* Largest request the small tier serves for a given alignment, 0 if none. */
bool hak_small_can_align(size_t size, size_t align);

/* ---- large.c ---- */
void hak_large_init(void);
/* zero: the block must read as zero (fresh mappings are; a BigCache hit is cleared). */
void *hak_large_alloc(size_t size, size_t align, bool zero);
/* A sampled allocation of another tier (observe.c): its free fires sample_free. */
void *hak_large_alloc_sampled(size_t size, size_t align, int tier, uint64_t weight);
void hak_large_free(void *p);
void *hak_large_realloc(void *p, size_t size);
size_t hak_large_usable(const void *p);
bool hak_large_owns(const void *p);
size_t hak_large_trim(void);
void hak_large_decay(void);
void hak_large_lock_all(void);
void hak_large_unlock_all(void);
void hak_large_reset_after_fork(void);

/* ---- alloc.c: the dispatcher behind every API entry point ---- */
void *hak_alloc(size_t size);
void *hak_alloc_aligned(size_t size, size_t align);
void hak_free(void *p);
size_t hak_usable_size(const void *p);
void *hak_realloc(void *p, size_t size);

#endif
