/* The Large tier: one mmap per block, a registry of live blocks, the
 * BigCache of recently freed mappings and the THP policy.
 *
 * Blocks carry no header: the registry (an open-addressing hash table
 * keyed by the block's address) holds each block's mapping size. So
 * large blocks are page aligned, free() of a pointer hakmem never handed
 * out is detected without touching it, and hakmem_owns never faults.
 * The BigCache keeps freed mappings (bounded in bytes, and each entry
 * only for HAKMEM_BIGCACHE_DECAY_MS) so that alloc/free cycles of large
 * blocks do not pay an mmap and munmap each time. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "config.h"
#include "hakmem_internal.h"
#include "observe.h"
#include "probes.h"

struct large_block {
    uintptr_t addr; /* 0 = empty slot, 1 = deleted */
    size_t map_size;
    size_t usable;
    int sampled_tier;       /* -1, or the tier a sampled allocation is reported as */
    uint64_t sample_weight; /* bytes the sample stands for */
};

#define SLOT_EMPTY ((uintptr_t)0)
#define SLOT_DELETED ((uintptr_t)1)

static pthread_mutex_t large_lock = PTHREAD_MUTEX_INITIALIZER;
static struct large_block *registry;
static size_t registry_slots; /* power of two */
static size_t registry_used;  /* live + deleted */
static size_t registry_live;

/* HAKMEM_BIGCACHE_MAX_MB defaults to 128: bench mixed_large (16 live blocks
 * of 1 - 16 MiB, 76 MB live, scale 1) took 0.97 s and peaked at 213 MB with
 * 64, 0.19 - 0.21 s and 231 - 242 MB with 128 (tcmalloc 0.18 s, 228 MB):
 * the misses a smaller cache forces are fresh mappings whose page zeroing
 * was 75 % of the profile. Nothing stays cached past BIGCACHE_DECAY_MS.
 *
 * Entries, besides the HAKMEM_BIGCACHE_MAX_MB byte cap. bench mixed_l25
 * (128 live blocks of 32 KiB - 1 MiB, random replacement) evicted on the
 * entry count at 64 while holding 18 of its 64 MiB: 234 000 page faults and
 * 0.73 s at scale 0.2; at 256 the byte cap binds, 22 700 faults (tcmalloc
 * 23 600) and 0.17 s, peak RSS 70 -> 92 MB (tcmalloc 92). */
#define BIGCACHE_ENTRIES 256
struct cached_map {
    void *addr;
    size_t map_size;
    uint64_t stamp_ms;
};
static struct cached_map bigcache[BIGCACHE_ENTRIES];
/* Written under large_lock; hak_large_decay reads it without. */
static size_t bigcache_count;
static size_t bigcache_bytes;
static size_t bigcache_limit;

/* The last entry, taken off the cache. Called with the lock held. */
static struct cached_map bigcache_pop_last(void)
{
    size_t last = bigcache_count - 1;
    __atomic_store_n(&bigcache_count, last, __ATOMIC_RELAXED);
    return bigcache[last];
}
static uint64_t bigcache_decay_ms;
static int thp_policy;

#define HUGE_PAGE ((size_t)2 * 1024 * 1024)

void hak_large_init(void)
{
    bigcache_limit = (size_t)hak_cfg_int(HAK_CFG_BIGCACHE_MAX_MB) * HAK_MiB;
    bigcache_decay_ms = (uint64_t)hak_cfg_int(HAK_CFG_BIGCACHE_DECAY_MS);
    thp_policy = (int)hak_cfg_int(HAK_CFG_THP);
}

static size_t slot_of(uintptr_t addr, size_t mask)
{
    /* Page-aligned keys: drop the zero bits, then mix. */
    uint64_t h = (uint64_t)(addr >> 12) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & mask;
}

static struct large_block *registry_find(uintptr_t addr)
{
    if (!registry)
        return NULL;
    size_t mask = registry_slots - 1;
    for (size_t i = slot_of(addr, mask);; i = (i + 1) & mask) {
        if (registry[i].addr == addr)
            return &registry[i];
        if (registry[i].addr == SLOT_EMPTY)
            return NULL;
    }
}

static bool registry_grow(void)
{
    size_t slots = registry_slots ? registry_slots * 2 : 1024;
    /* Only rehash in place of a larger table when deletions, not live
     * entries, filled the table. */
    if (registry_live * 4 < registry_slots)
        slots = registry_slots;
    struct large_block *table = hak_os_map(slots * sizeof(*table), HAK_PT_META);
    if (!table)
        return false;
    for (size_t k = 0; k < registry_slots; k++) {
        uintptr_t a = registry[k].addr;
        if (a == SLOT_EMPTY || a == SLOT_DELETED)
            continue;
        size_t i = slot_of(a, slots - 1);
        while (table[i].addr != SLOT_EMPTY)
            i = (i + 1) & (slots - 1);
        table[i] = registry[k];
    }
    if (registry)
        hak_os_unmap(registry, registry_slots * sizeof(*registry), HAK_PT_META);
    registry = table;
    registry_slots = slots;
    registry_used = registry_live;
    return true;
}

static bool registry_insert(uintptr_t addr, size_t map_size, size_t usable, int sampled_tier, uint64_t weight)
{
    if ((registry_used + 1) * 4 > registry_slots * 3 && !registry_grow())
        return false;
    size_t mask = registry_slots - 1;
    size_t i = slot_of(addr, mask);
    while (registry[i].addr != SLOT_EMPTY && registry[i].addr != SLOT_DELETED)
        i = (i + 1) & mask;
    if (registry[i].addr == SLOT_EMPTY)
        registry_used++;
    registry[i] = (struct large_block){addr, map_size, usable, sampled_tier, weight};
    registry_live++;
    return true;
}

static void registry_delete(struct large_block *b)
{
    b->addr = SLOT_DELETED;
    registry_live--;
}

/* HAKMEM_THP: probe large_thp says what was decided for each mapping
 * (advice 0 MADV_NOHUGEPAGE, 1 MADV_HUGEPAGE, 2 none: too small).
 * Returns 1 for MADV_HUGEPAGE.
 *
 * Mappings are not aligned to 2 MiB for it: the kernel backs the aligned
 * 2 MiB stretches inside the mapping with huge pages, and only the ends
 * (under 2 MiB each) stay in small pages. Aligning them left gaps between
 * mappings, so freed neighbours no longer merged in the BigCache: bench
 * mixed_large (7 interleaved runs, medians) missed the cache 66 times
 * against 37, 0.329 s against 0.187 s, peak RSS 233 against 191 MiB
 * (tcmalloc 0.186 s and 223 MiB; HAKMEM_THP=off 0.36 s and 205 MiB: the
 * huge pages halve the faults of what the cache misses). */
static int apply_thp(void *p, size_t map_size)
{
    int advice = 2;
    if (thp_policy == HAK_THP_OFF)
        advice = 0;
    else if (map_size >= (thp_policy == HAK_THP_ON ? HAK_MiB : HUGE_PAGE))
        advice = 1;
    if (advice != 2)
        hak_os_hugepage(p, map_size, advice == 1);
    HAK_PROBE(large_thp, map_size, thp_policy, advice);
    return advice == 1;
}

static void unmap_block(void *p, size_t map_size, int reason)
{
    HAK_PROBE(large_unmap, p, map_size, reason);
    hak_os_unmap(p, map_size, HAK_PT_LARGE);
}

/* Drop cache entries idle past the decay time. Called with the lock held. */
static void bigcache_decay(uint64_t now)
{
    size_t dropped = 0;
    for (size_t i = 0; i < bigcache_count;) {
        if (now - bigcache[i].stamp_ms >= bigcache_decay_ms) {
            struct cached_map victim = bigcache[i];
            bigcache[i] = bigcache_pop_last();
            bigcache_bytes -= victim.map_size;
            HAK_UNCOUNT(bigcache_bytes, victim.map_size);
            HAK_PROBE(large_cache_evict, victim.map_size, HAK_UNMAP_DECAY);
            unmap_block(victim.addr, victim.map_size, HAK_UNMAP_DECAY);
            dropped += victim.map_size;
        } else {
            i++;
        }
    }
    if (dropped) {
        HAK_COUNT(decay_purged_bytes, dropped);
        HAK_PROBE(decay_tick, HAK_PT_LARGE, dropped, bigcache_bytes);
    }
}

void hak_large_decay(void)
{
    if (!__atomic_load_n(&bigcache_count, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&large_lock);
    bigcache_decay(hak_now_ms());
    pthread_mutex_unlock(&large_lock);
}

/* Best fit among cached mappings no more than 25 % larger than needed;
 * else the head of the smallest larger one, whose tail stays cached. Exact
 * fits alone served bench mixed_large (16 live blocks of 1 - 16 MiB) from
 * the cache at 56 % of its allocations, each miss an mmap, 256 - 4096 page
 * faults and an munmap: 1.15 s at scale 0.3 against tcmalloc's 0.13. */
static void *bigcache_take(size_t map_size, size_t align, size_t *got_size)
{
    size_t best = bigcache_count, larger = bigcache_count;
    for (size_t i = 0; i < bigcache_count; i++) {
        size_t s = bigcache[i].map_size;
        if (s < map_size || ((uintptr_t)bigcache[i].addr & (align - 1)))
            continue;
        if (s - map_size <= map_size / 4) {
            if (best == bigcache_count || s < bigcache[best].map_size)
                best = i;
        } else if (larger == bigcache_count || s < bigcache[larger].map_size) {
            larger = i;
        }
    }
    if (best == bigcache_count && larger == bigcache_count)
        return NULL;
    if (best == bigcache_count) {
        struct cached_map *e = &bigcache[larger];
        void *p = e->addr;
        e->addr = (char *)e->addr + map_size;
        e->map_size -= map_size;
        bigcache_bytes -= map_size;
        HAK_UNCOUNT(bigcache_bytes, map_size);
        *got_size = map_size;
        return p;
    }
    void *p = bigcache[best].addr;
    *got_size = bigcache[best].map_size;
    bigcache[best] = bigcache_pop_last();
    bigcache_bytes -= *got_size;
    HAK_UNCOUNT(bigcache_bytes, *got_size);
    return p;
}

static void bigcache_remove(size_t i)
{
    bigcache_bytes -= bigcache[i].map_size;
    HAK_UNCOUNT(bigcache_bytes, bigcache[i].map_size);
    bigcache[i] = bigcache_pop_last();
}

/* Blocks the L25 pool would serve are not cached: a size is retained in
 * one tier only (the L25 pool keeps its own free spans). Such blocks reach
 * the Large tier only when the pool is capped, off, or out of memory. A
 * freed mapping merges with cached ones next to it (the kernel places new
 * mappings next to each other), so that a later larger request fits. */
static bool bigcache_put(void *p, size_t map_size, uint64_t now)
{
    if (map_size > bigcache_limit / 4 || map_size <= HAK_L25_MAX)
        return false;
    for (size_t i = 0; i < bigcache_count;) {
        char *a = bigcache[i].addr;
        if (a + bigcache[i].map_size == (char *)p || (char *)p + map_size == a) {
            p = a < (char *)p ? (void *)a : p;
            map_size += bigcache[i].map_size;
            bigcache_remove(i);
            continue;
        }
        i++;
    }
    while (bigcache_count && (bigcache_count == BIGCACHE_ENTRIES || bigcache_bytes + map_size > bigcache_limit)) {
        size_t oldest = 0;
        for (size_t i = 1; i < bigcache_count; i++)
            if (bigcache[i].stamp_ms < bigcache[oldest].stamp_ms)
                oldest = i;
        struct cached_map victim = bigcache[oldest];
        bigcache_remove(oldest);
        HAK_PROBE(large_cache_evict, victim.map_size, HAK_UNMAP_EVICT);
        unmap_block(victim.addr, victim.map_size, HAK_UNMAP_EVICT);
    }
    if (map_size > bigcache_limit) {
        HAK_PROBE(large_cache_evict, map_size, HAK_UNMAP_EVICT);
        unmap_block(p, map_size, HAK_UNMAP_EVICT);
        return true;
    }
    bigcache[bigcache_count] = (struct cached_map){p, map_size, now};
    __atomic_store_n(&bigcache_count, bigcache_count + 1, __ATOMIC_RELAXED);
    bigcache_bytes += map_size;
    HAK_COUNT(bigcache_bytes, map_size);
    return true;
}

static void *large_alloc(size_t size, size_t align, bool zero, int sampled_tier, uint64_t weight);

void *hak_large_alloc(size_t size, size_t align, bool zero)
{
    return large_alloc(size, align, zero, -1, 0);
}

void *hak_large_alloc_sampled(size_t size, size_t align, int tier, uint64_t weight)
{
    return large_alloc(size, align, false, tier, weight);
}

static void *large_alloc(size_t size, size_t align, bool zero, int sampled_tier, uint64_t weight)
{
    hak_ensure_init();
    if (size > PTRDIFF_MAX - HUGE_PAGE || align > PTRDIFF_MAX / 2) {
        HAK_PROBE(os_oom, size, align, HAK_PT_LARGE);
        errno = ENOMEM;
        return NULL;
    }
    if (align < HAK_PAGE)
        align = HAK_PAGE;
    size_t map_size = hak_align_up(size ? size : 1, HAK_PAGE);

    pthread_mutex_lock(&large_lock);
    uint64_t now = bigcache_count ? hak_now_ms() : 0;
    if (bigcache_count)
        bigcache_decay(now);
    size_t got_size = 0;
    void *p = bigcache_count ? bigcache_take(map_size, align, &got_size) : NULL;
    if (p) {
        HAK_COUNT(bigcache_hits, 1);
        HAK_PROBE(large_cache_hit, size, got_size);
        map_size = got_size;
    } else {
        if (bigcache_limit) {
            HAK_COUNT(bigcache_misses, 1);
            HAK_PROBE(large_cache_miss, size);
        }
        pthread_mutex_unlock(&large_lock);
        uint64_t t0 = hak_timing_start();
        p = hak_os_map_aligned(map_size, align, HAK_PT_LARGE);
        hak_timing_stop(HAK_TIME_LARGE_MAP, t0);
        if (!p) {
            HAK_PROBE(os_oom, size, align, HAK_PT_LARGE);
            errno = ENOMEM;
            return NULL;
        }
        int huge = apply_thp(p, map_size);
        HAK_PROBE(large_map, size, map_size, align, huge);
        pthread_mutex_lock(&large_lock);
    }
    if (sampled_tier < 0 && HAK_UNLIKELY(hak_sampling_active()) && (weight = hak_sample_charge(size)) != 0)
        sampled_tier = HAK_PT_LARGE;
    if (!registry_insert((uintptr_t)p, map_size, size, sampled_tier, weight)) {
        pthread_mutex_unlock(&large_lock);
        unmap_block(p, map_size, HAK_UNMAP_FREE);
        HAK_PROBE(os_oom, size, align, HAK_PT_LARGE);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_unlock(&large_lock);
    if (sampled_tier >= 0)
        hak_sample_alloc(p, size, weight, sampled_tier);
    hak_maintenance();
    HAK_COUNT(large_live, 1);
    HAK_COUNT(large_live_bytes, map_size);
    if (zero && got_size)
        memset(p, 0, size);
    return p;
}

void hak_large_free(void *p)
{
    pthread_mutex_lock(&large_lock);
    struct large_block *b = registry_find((uintptr_t)p);
    if (!b) {
        pthread_mutex_unlock(&large_lock);
        hak_report_misuse("free(): pointer not allocated by hakmem, or freed twice", p);
        return;
    }
    size_t map_size = b->map_size;
    /* Reported before the mapping can be handed out again (BigCache), so
     * that a tracer never sees the next owner's sample_alloc first. */
    if (b->sampled_tier >= 0)
        hak_sample_free(p, b->usable, b->sample_weight, b->sampled_tier);
    registry_delete(b);
    HAK_UNCOUNT(large_live, 1);
    HAK_UNCOUNT(large_live_bytes, map_size);
    bool cached = bigcache_limit && bigcache_put(p, map_size, hak_now_ms());
    pthread_mutex_unlock(&large_lock);
    if (!cached)
        unmap_block(p, map_size, HAK_UNMAP_FREE);
}

/* mremap cannot grow a mapping that spans two kernel regions (VMAs): the
 * BigCache merges neighbours by address, and neighbours with different
 * THP advice, or one that mremap moved, stay separate regions (EFAULT).
 * Then the block moves the way the other tiers' blocks do. */
static void *large_realloc_by_copy(void *p, size_t size, size_t keep)
{
    void *q = hak_large_alloc(size, HAK_PAGE, false);
    if (!q)
        return NULL; /* errno = ENOMEM, os_oom fired; p is untouched */
    memcpy(q, p, keep);
    hak_large_free(p);
    return q;
}

/* Grow or shrink in place when the mapping allows it, otherwise let the
 * kernel move the pages (mremap): no copy either way, unless mremap
 * cannot (above). NULL (errno set) leaves the block untouched. */
void *hak_large_realloc(void *p, size_t size)
{
    if (size > PTRDIFF_MAX - HUGE_PAGE) {
        errno = ENOMEM;
        return NULL;
    }
    size_t new_map = hak_align_up(size ? size : 1, HAK_PAGE);
    pthread_mutex_lock(&large_lock);
    struct large_block *b = registry_find((uintptr_t)p);
    if (!b) {
        pthread_mutex_unlock(&large_lock);
        hak_report_misuse("realloc(): pointer not allocated by hakmem", p);
        errno = EINVAL;
        return NULL;
    }
    size_t old_map = b->map_size;
    size_t old_usable = b->usable;
    /* A sampled block stops being one when it is resized: its sample is
     * reported freed (the tracer matches sizes and addresses). */
    if (b->sampled_tier >= 0) {
        hak_sample_free(p, old_usable, b->sample_weight, b->sampled_tier);
        b->sampled_tier = -1;
    }
    if (new_map <= old_map && new_map >= old_map / 2) {
        b->usable = size;
        pthread_mutex_unlock(&large_lock);
        return p;
    }
    registry_delete(b);
    pthread_mutex_unlock(&large_lock);

    int saved = errno;
    void *q = mremap(p, old_map, new_map, MREMAP_MAYMOVE);
    pthread_mutex_lock(&large_lock);
    if (q == MAP_FAILED) {
        registry_insert((uintptr_t)p, old_map, old_usable, -1, 0);
        pthread_mutex_unlock(&large_lock);
        errno = saved;
        return large_realloc_by_copy(p, size, old_usable < size ? old_usable : size);
    }
    /* The registry slot was freed above, so re-inserting cannot need more
     * room than the table already has. */
    registry_insert((uintptr_t)q, new_map, size, -1, 0);
    pthread_mutex_unlock(&large_lock);
    if (new_map > old_map) {
        HAK_COUNT(mapped_bytes, new_map - old_map);
        HAK_COUNT(tier_mapped[HAK_PT_LARGE], new_map - old_map);
        HAK_COUNT(large_live_bytes, new_map - old_map);
    } else {
        HAK_UNCOUNT(mapped_bytes, old_map - new_map);
        HAK_UNCOUNT(tier_mapped[HAK_PT_LARGE], old_map - new_map);
        HAK_UNCOUNT(large_live_bytes, old_map - new_map);
    }
    HAK_PROBE(large_remap, old_map, new_map, q != p);
    if (new_map > old_map)
        apply_thp(q, new_map);
    return q;
}

size_t hak_large_usable(const void *p)
{
    pthread_mutex_lock(&large_lock);
    struct large_block *b = registry_find((uintptr_t)p);
    size_t usable = b ? b->map_size : 0;
    pthread_mutex_unlock(&large_lock);
    return usable;
}

bool hak_large_owns(const void *p)
{
    pthread_mutex_lock(&large_lock);
    bool owned = registry_find((uintptr_t)p) != NULL;
    pthread_mutex_unlock(&large_lock);
    return owned;
}

size_t hak_large_trim(void)
{
    size_t released = 0;
    pthread_mutex_lock(&large_lock);
    while (bigcache_count) {
        struct cached_map victim = bigcache_pop_last();
        bigcache_bytes -= victim.map_size;
        HAK_UNCOUNT(bigcache_bytes, victim.map_size);
        released += victim.map_size;
        HAK_PROBE(large_cache_evict, victim.map_size, HAK_UNMAP_TRIM);
        unmap_block(victim.addr, victim.map_size, HAK_UNMAP_TRIM);
    }
    pthread_mutex_unlock(&large_lock);
    return released;
}

void hak_large_lock_all(void)
{
    pthread_mutex_lock(&large_lock);
}

void hak_large_unlock_all(void)
{
    pthread_mutex_unlock(&large_lock);
}

void hak_large_reset_after_fork(void)
{
    pthread_mutex_init(&large_lock, NULL);
}
