/* USDT probes, provider "hakmem". The only file that includes <sys/sdt.h>.
 *
 * Every probe is gated by its is-enabled semaphore: the kernel bumps the
 * semaphore when bpftrace, libbpf or perf attaches (uprobe ref_ctr), so an
 * un-attached probe costs one predictable load and branch, and its
 * arguments are never computed. A USDT=0 build compiles every probe to
 * nothing.
 *
 * HAK_PROBES is the catalogue: a probe used in the code but missing here
 * fails to link (no semaphore), and tests/test_probes.py checks the ELF
 * notes against TRACING.md. Names and argument orders are a public
 * interface: change one only with a new name and a TRACING.md entry. */
#ifndef HAKMEM_PROBES_H
#define HAKMEM_PROBES_H

/* X(name, argument count) */
#define HAK_PROBES(X)       \
    X(config_loaded, 3)     \
    X(config_rejected, 3)   \
    X(config_unknown, 2)    \
    X(os_map, 3)            \
    X(os_unmap, 3)          \
    X(os_purge, 3)          \
    X(os_reuse, 3)          \
    X(os_map_failed, 3)     \
    X(os_oom, 3)            \
    X(large_map, 4)         \
    X(large_unmap, 3)       \
    X(large_remap, 3)       \
    X(large_cache_hit, 2)   \
    X(large_cache_miss, 1)  \
    X(large_cache_evict, 2) \
    X(ss_map, 2)            \
    X(ss_unmap, 2)          \
    X(ss_slab_carve, 4)     \
    X(ss_slab_release, 3)   \
    X(ss_tier, 4)           \
    X(ss_slab_scavenge, 3)  \
    X(ss_slab_sparse, 3)    \
    X(l25_chunk_map, 3)     \
    X(l25_chunk_unmap, 3)   \
    X(pool_refill, 4)       \
    X(pool_spill, 4)        \
    X(pool_fallback, 4)     \
    X(pool_ring_flush, 2)   \
    X(decay_tick, 3)        \
    X(budget_exceeded, 2)   \
    X(diet_step, 3)         \
    X(tiny_sll_miss, 2)     \
    X(tiny_refill, 3)       \
    X(tiny_spill, 3)        \
    X(tiny_fallback, 3)     \
    X(tiny_remote_free, 3)  \
    X(tiny_remote_drain, 3) \
    X(tiny_abandon, 3)      \
    X(tiny_adopt, 3)        \
    X(large_thp, 3)         \
    X(sample_alloc, 4)      \
    X(sample_free, 3)       \
    X(thread_init, 1)       \
    X(thread_exit, 3)

/* Reason and source codes carried by probe arguments (TRACING.md spells
 * them out; values are part of the interface). */
enum hak_probe_tier_code {
    HAK_PT_META = 0, /* allocator metadata (segment map, bootstrap) */
    HAK_PT_TINY = 1,
    HAK_PT_MID = 2,
    HAK_PT_L25 = 3,
    HAK_PT_LARGE = 4,
};
enum hak_unmap_reason {
    HAK_UNMAP_FREE = 0,  /* the block was freed and not cached */
    HAK_UNMAP_EVICT = 1, /* evicted from the BigCache (over capacity) */
    HAK_UNMAP_DECAY = 2, /* idle in the BigCache past the decay time */
    HAK_UNMAP_TRIM = 3,  /* malloc_trim() */
};
enum hak_refill_source {
    HAK_REFILL_PARTIAL = 0,  /* free blocks of a slab the thread owns */
    HAK_REFILL_FRESH = 1,    /* a newly carved slab */
    HAK_REFILL_MAGAZINE = 2, /* the thread's magazine (no slab touched) */
    HAK_REFILL_REMOTE = 3,   /* blocks other threads freed, just drained */
    HAK_REFILL_ADOPTED = 4,  /* a slab adopted from an exited thread */
};
enum hak_spill_target {
    HAK_SPILL_MAGAZINE = 0, /* SLL over capacity: half moves to the magazine */
    HAK_SPILL_SLABS = 1,    /* magazine over capacity: blocks go back to their slabs */
    HAK_SPILL_IDLE = 2,     /* the class sat idle: its whole thread cache went back */
};
enum hak_fallback_reason {
    HAK_FALLBACK_CAP = 0,       /* HAKMEM_TINY_SS_MAX_MB reached */
    HAK_FALLBACK_MMAP = 1,      /* the OS refused a SuperSlab */
    HAK_FALLBACK_ROUTING = 2,   /* HAKMEM_TINY_PROFILE routes the class away */
    HAK_FALLBACK_REENTRANT = 3, /* the thread's Tiny tier was mid-operation */
    HAK_FALLBACK_DISABLED = 4,  /* HAKMEM_WRAP_TINY=0 or USE_SUPERSLAB=0 */
    HAK_FALLBACK_EXITED = 5,    /* the thread already flushed its cache (TLS destructors) */
};

#ifndef HAKMEM_USDT
#define HAKMEM_USDT 1
#endif

#if HAKMEM_USDT
#define _SDT_HAS_SEMAPHORES 1
#define SDT_USE_VARIADIC 1
#include <sys/sdt.h>

#define HAK_PROBE_DECLARE_SEMAPHORE(name, nargs) extern volatile unsigned short hakmem_##name##_semaphore;
HAK_PROBES(HAK_PROBE_DECLARE_SEMAPHORE)
#undef HAK_PROBE_DECLARE_SEMAPHORE

#define HAK_PROBE_ENABLED(name) __builtin_expect(hakmem_##name##_semaphore != 0, 0)
#define HAK_PROBE(name, ...)                          \
    do {                                              \
        if (HAK_PROBE_ENABLED(name))                  \
            STAP_PROBEV(hakmem, name, ##__VA_ARGS__); \
    } while (0)
#else
/* Arguments are still type-checked and "used", so a USDT=0 build has the
 * same warnings as the default one, but nothing is evaluated. */
static inline void hak_probe_discard(int unused, ...)
{
    (void)unused;
}
#define HAK_PROBE_ENABLED(name) 0
#define HAK_PROBE(name, ...)                     \
    do {                                         \
        if (0)                                   \
            hak_probe_discard(0, ##__VA_ARGS__); \
    } while (0)
#endif

#endif
