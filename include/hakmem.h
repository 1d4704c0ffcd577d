/* hakmem — a general-purpose malloc for Linux whose every tier transition is
 * a USDT probe (provider "hakmem"; see TRACING.md).
 *
 * The standard allocation API (malloc, free, calloc, realloc, the aligned
 * forms, malloc_usable_size, mallinfo2, ...) is exported under its usual
 * names: link with -lhakmem or LD_PRELOAD libhakmem.so. This header only
 * declares what hakmem adds on top. */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_VERSION_MAJOR 0
#define HAKMEM_VERSION_MINOR 5
#define HAKMEM_VERSION_PATCH 3

/* "0.1.0 (usdt=1 stats=0 debug=0)": version plus the build switches. */
const char *hakmem_version(void);

/* Non-zero when p is the start of a block hakmem manages: the check a
 * program (or a test) uses to prove an allocation did not end in another
 * allocator. Never faults, whatever p is. A freed Large block (> 32 KiB)
 * is no longer owned; a freed small block stays owned while it sits in a
 * cache (hakmem does not track a small block's liveness on the fast path). */
int hakmem_owns(const void *p);

/* Which tier serves a live pointer; HAKMEM_TIER_NONE when hakmem does not
 * own it. */
enum hakmem_tier {
    HAKMEM_TIER_NONE = 0,
    HAKMEM_TIER_TINY = 1,  /* 1 B - 1 KiB, SuperSlab slabs */
    HAKMEM_TIER_MID = 2,   /* 1 KiB - 32 KiB */
    HAKMEM_TIER_L25 = 3,   /* 32 KiB - ~1 MiB */
    HAKMEM_TIER_LARGE = 4, /* direct mmap, BigCache */
    HAKMEM_TIER_BOOT = 5,  /* static bootstrap arena used while initialising */
};
enum hakmem_tier hakmem_tier_of(const void *p);

/* Counters kept by every build (slow-path events only; the fast-path
 * counts are filled in by a STATS=1 build and are zero otherwise). */
struct hakmem_stats {
    uint64_t mapped_bytes;   /* bytes currently mapped from the OS by hakmem */
    uint64_t purged_bytes;   /* of those, bytes currently purged (not resident) */
    uint64_t os_map_calls;   /* mmap calls */
    uint64_t os_unmap_calls; /* munmap calls */
    uint64_t os_purge_calls; /* madvise calls that returned memory */
    uint64_t superslabs;     /* SuperSlabs currently mapped */
    uint64_t tiny_refills;   /* thread-cache refills from the central lists */
    uint64_t tiny_spills;    /* thread-cache spills back to the central lists */
    uint64_t large_live;     /* live Large-tier blocks */
    uint64_t large_live_bytes;
    uint64_t bigcache_hits;
    uint64_t bigcache_misses;
    uint64_t bigcache_bytes;  /* bytes held in the BigCache now */
    uint64_t config_rejected; /* HAKMEM_* values rejected at start-up */
    uint64_t threads_live;    /* threads with a hakmem thread cache */
    uint64_t threads_exited;
    /* STATS=1 builds only (zero otherwise). */
    uint64_t malloc_calls;
    uint64_t free_calls;
    uint64_t tiny_hits; /* served from a thread cache without a refill */
    /* Every build again. */
    uint64_t tiny_fallbacks;      /* Tiny requests served by the next tier (any reason) */
    uint64_t tiny_remote_drained; /* blocks freed by another thread, taken back by the owner */
    uint64_t tiny_adopted;        /* slabs of exited threads adopted */
    uint64_t tiny_abandoned;      /* slabs left by exiting threads with live blocks */
    /* os_purge probe firings: madvise calls plus never-touched ranges
     * counted as purged (a fresh L25 chunk, SuperSlab slabs not carved). */
    uint64_t os_purge_events;
    uint64_t mid_refills;      /* Mid (1-32 KiB) thread-cache refills */
    uint64_t mid_spills;       /* Mid thread-cache spills to the slabs */
    uint64_t mid_fallbacks;    /* Mid requests served by the Large tier */
    uint64_t mid_ring_flushes; /* HAKMEM_POOL_TLS_RING flushes */
    /* Mapped and purged bytes by tier (index: 0 metadata, 1 SuperSlabs
     * (Tiny and Mid), 2 unused, 3 L25, 4 Large); a tier's resident memory
     * is at most mapped - purged, the figure the probes give. */
    uint64_t tier_mapped[5];
    uint64_t tier_purged[5];
    uint64_t l25_live_bytes;     /* L25 blocks out (live or in a thread cache) */
    uint64_t l25_free_resident;  /* L25 free pages not yet purged */
    uint64_t l25_chunks;         /* L25 2 MiB chunks mapped */
    uint64_t l25_refills;        /* trips to the L25 pool lock for blocks */
    uint64_t l25_fallbacks;      /* L25 requests served by the Large tier */
    uint64_t budget_exceeded;    /* HAKMEM_TINY_RSS_BUDGET_KB checks that found RSS over it */
    uint64_t diet_steps;         /* cache-capacity cuts made for the budget */
    uint64_t decay_purged_bytes; /* bytes purged by decay (time or allowance) */
    uint64_t scavenged_bytes;    /* free pages purged inside slabs still in use */
};
void hakmem_stats_get(struct hakmem_stats *out);

/* Write the effective configuration: one "NAME=value  (source)" line per
 * variable, or the Markdown reference (markdown != 0). Returns 0 or -1. */
int hakmem_config_print(int fd, int markdown);

/* Print the per-tier summary that HAKMEM_VERBOSE=1 prints at exit. */
void hakmem_print_summary(int fd);

#ifdef __cplusplus
}
#endif
#endif
