/* SuperSlab lifecycle: map, carve into slabs, take slabs back, purge
 * them, and unmap SuperSlabs that have emptied. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "observe.h"
#include "probes.h"
#include "size_class.h"
#include "superslab.h"

uint8_t hak_ss_map[HAK_SS_MAP_ENTRIES];

static pthread_mutex_t ss_lock = PTHREAD_MUTEX_INITIALIZER;
/* HOT SuperSlabs with at least one free slab, and DRAINING ones (which
 * always have free slabs: their utilisation is under the up threshold). */
static struct hak_superslab *ss_hot_with_free;
static struct hak_superslab *ss_draining;
static struct hak_superslab *ss_all;
static size_t ss_mapped_count;
static size_t ss_empty_count;
/* Bytes of slabs held by Tiny classes: what HAKMEM_TINY_SS_MAX_MB caps. */
static size_t tiny_slab_bytes;
/* Blocks in slabs held by Mid classes (1-32 KiB): what HAKMEM_CAP_MID caps. */
static size_t mid_slab_blocks;
/* Tier thresholds in used slabs, fixed at start-up from the configuration. */
static uint32_t tier_down_slabs;
static uint32_t tier_up_slabs;
/* Empty SuperSlabs kept mapped (their slabs purged) so that a live set
 * hovering around a SuperSlab boundary does not map and unmap each time;
 * HAKMEM_TINY_SS_MIN_MB raises it. */
static size_t ss_empty_keep = 1;

/* Free slabs whose pages are still resident, oldest first. A released
 * slab is purged once it has been free for HAKMEM_TINY_DECAY_MS, or at
 * once when the dirty bytes pass dirty_max(); a slab carved again before
 * that needs neither the madvise nor the page faults. Measured on the
 * README's python3.11 demo: purging every slab at once cost 30 000
 * madvise calls and as many refaulted slabs. */
static struct slab_list dirty;
static size_t dirty_bytes;
static _Atomic size_t dirty_count;
static uint32_t decay_ms;
/* Read without the lock by hak_ss_slab_bytes(). */
static _Atomic size_t slabs_in_use;
/* Dirty bytes allowed: 1 MiB plus a sixteenth of the slab memory in use,
 * so a small program keeps little and a large one avoids most purge and
 * refault pairs (python3.11 demo, 100 MB of slabs: 30 078 purges at
 * decay 0, 13 015 with a fixed 4 MiB allowance, 7 595 with 16 MiB). With
 * sparse slabs (tiny.c), an eighth kept bench frag_stress's peak, where
 * its 1-32 KiB blocks give way to L25 ones, at 62 MiB; a sixteenth at
 * 60.3 MiB (glibc 60.9), with about as many madvise calls in the python3.11
 * demo (6 300-6 800); a thirty-second made those 10 700. */
static size_t dirty_max(void)
{
    return HAK_MiB + hak_ss_slab_bytes() / 16;
}

size_t hak_ss_slab_bytes(void)
{
    return atomic_load_explicit(&slabs_in_use, memory_order_relaxed) * HAK_SLAB_SIZE;
}

/* The SuperSlab header (slab records and fields), in whole pages. */
#define SS_HEADER_BYTES ((sizeof(struct hak_superslab) + HAK_PAGE - 1) & ~(HAK_PAGE - 1))
#define SS_ALL_USABLE_MASK ((uint32_t)(~0u) & ~((1u << HAK_SS_FIRST_SLAB) - 1))
enum { SS_ON_NONE = 0, SS_ON_HOT = 1, SS_ON_DRAINING = 2 };

void hak_ss_lock(void)
{
    pthread_mutex_lock(&ss_lock);
}

void hak_ss_unlock(void)
{
    pthread_mutex_unlock(&ss_lock);
}

void hak_ss_reset_lock(void)
{
    pthread_mutex_init(&ss_lock, NULL);
}

static struct hak_superslab **list_head(uint32_t which)
{
    return which == SS_ON_HOT ? &ss_hot_with_free : &ss_draining;
}

static void list_push(struct hak_superslab *ss, uint32_t which)
{
    struct hak_superslab **head = list_head(which);
    ss->prev = NULL;
    ss->next = *head;
    if (*head)
        (*head)->prev = ss;
    *head = ss;
    ss->on_list = which;
}

static void list_remove(struct hak_superslab *ss)
{
    if (ss->on_list == SS_ON_NONE)
        return;
    if (ss->prev)
        ss->prev->next = ss->next;
    else
        *list_head(ss->on_list) = ss->next;
    if (ss->next)
        ss->next->prev = ss->prev;
    ss->next = ss->prev = NULL;
    ss->on_list = SS_ON_NONE;
}

/* The list a SuperSlab belongs on after a slab changed hands. */
static void relist(struct hak_superslab *ss)
{
    uint32_t want = ss->tier == HAK_SS_DRAINING ? SS_ON_DRAINING : ss->free_slabs ? SS_ON_HOT : SS_ON_NONE;
    if (ss->on_list != want) {
        list_remove(ss);
        if (want != SS_ON_NONE)
            list_push(ss, want);
    }
}

static void set_tier(struct hak_superslab *ss, uint32_t tier)
{
    uint32_t used = HAK_SS_USABLE_SLABS - ss->free_slabs;
    HAK_PROBE(ss_tier, ss, ss->tier, tier, used * 1000u / HAK_SS_USABLE_SLABS);
    ss->tier = tier;
}

/* A slab's resident extent (slab->resident_pages): pages past it are
 * counted as purged from the slab's carving on, not only once it is
 * free. Counting the pages past what the current class carved as purged
 * at release instead left the rest of a dirty slab, carved again by a
 * class that got less far, resident for good and counted as purged: bench
 * frag_stress held 45.1 MB after 1.5 s idle where the allocator reported
 * at most 38.7 MiB resident (and 44.0 MB once fixed). */
static size_t slab_touched(const struct hak_slab *slab)
{
    return (size_t)slab->resident_pages * HAK_PAGE;
}

void hak_ss_slab_extend(struct hak_slab *slab)
{
    char *base = hak_slab_base(slab);
    uint16_t reach = (uint16_t)hak_slab_carved_pages(slab);
    if (reach <= slab->resident_pages)
        return;
    hak_os_unpurge(base + (size_t)slab->resident_pages * HAK_PAGE, (size_t)(reach - slab->resident_pages) * HAK_PAGE,
                   HAK_PT_TINY);
    slab->purged_pages = (uint16_t)(slab->purged_pages - (reach - slab->resident_pages));
    slab->resident_pages = reach;
}

size_t hak_ss_slab_purge_tail(struct hak_slab *slab)
{
    char *base = hak_slab_base(slab);
    size_t carved = (size_t)hak_slab_carved_pages(slab) * HAK_PAGE;
    size_t extent = slab_touched(slab);
    if (carved >= extent)
        return 0;
    hak_os_purge(base + carved, extent - carved, HAK_PT_TINY);
    slab->purged_pages = (uint16_t)(slab->purged_pages + (extent - carved) / HAK_PAGE);
    slab->resident_pages = (uint16_t)(carved / HAK_PAGE);
    HAK_COUNT(scavenged_bytes, extent - carved);
    HAK_PROBE(ss_slab_scavenge, slab->class_index, extent - carved, base);
    return extent - carved;
}

/* What a free slab may still hold resident: its touched pages less those
 * its owner already scavenged (tiny.c). */
static size_t slab_dirty_bytes(const struct hak_slab *slab)
{
    return slab_touched(slab) - (size_t)__builtin_popcount(slab->scav_mask) * HAK_PAGE;
}

static void dirty_append(struct hak_slab *slab, uint32_t now)
{
    slab->released_ms = now;
    slab_append(&dirty, slab, HAK_SLAB_DIRTY);
    dirty_bytes += slab_dirty_bytes(slab);
    atomic_store_explicit(&dirty_count, atomic_load_explicit(&dirty_count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void dirty_remove(struct hak_slab *slab)
{
    slab_remove(&dirty, slab);
    dirty_bytes -= slab_dirty_bytes(slab);
    atomic_store_explicit(&dirty_count, atomic_load_explicit(&dirty_count, memory_order_relaxed) - 1,
                          memory_order_relaxed);
}

/* Under ss_lock: a free slab can be carved by no one meanwhile. Pages
 * its owner scavenged are purged already and counted in purged_pages. */
static void purge_slab_locked(struct hak_slab *slab)
{
    size_t pages = slab_touched(slab) / HAK_PAGE;
    char *base = hak_slab_base(slab);
    dirty_remove(slab);
    for (size_t i = 0; i < pages;) {
        if (slab->scav_mask & (1u << i)) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < pages && !(slab->scav_mask & (1u << j)))
            j++;
        hak_os_purge(base + i * HAK_PAGE, (j - i) * HAK_PAGE, HAK_PT_TINY);
        slab->purged_pages = (uint16_t)(slab->purged_pages + (j - i));
        i = j;
    }
    slab->scav_mask = 0;
    slab->resident_pages = 0;
}

/* Purge dirty slabs past the decay time, and the oldest ones while the
 * dirty bytes exceed `limit`. */
static void decay_locked(uint32_t now, size_t limit)
{
    size_t before = dirty_bytes;
    while (dirty.head && (dirty_bytes > limit || now - dirty.head->released_ms >= decay_ms))
        purge_slab_locked(dirty.head);
    if (before != dirty_bytes) {
        HAK_COUNT(decay_purged_bytes, before - dirty_bytes);
        HAK_PROBE(decay_tick, HAK_PT_TINY, before - dirty_bytes, dirty_bytes);
    }
}

void hak_ss_purge_dirty(void)
{
    if (!atomic_load_explicit(&dirty_count, memory_order_relaxed))
        return;
    pthread_mutex_lock(&ss_lock);
    decay_locked((uint32_t)hak_now_ms(), 0);
    pthread_mutex_unlock(&ss_lock);
}

void hak_ss_decay(void)
{
    if (!atomic_load_explicit(&dirty_count, memory_order_relaxed))
        return;
    pthread_mutex_lock(&ss_lock);
    decay_locked((uint32_t)hak_now_ms(), dirty_max());
    pthread_mutex_unlock(&ss_lock);
}

static struct hak_superslab *ss_map_new_locked(int *reason)
{
    uint64_t t0 = hak_timing_start();
    struct hak_superslab *ss = hak_os_map_aligned(HAK_SS_SIZE, HAK_SS_SIZE, HAK_PT_TINY);
    hak_timing_stop(HAK_TIME_SS_MAP, t0);
    if (!ss) {
        *reason = HAK_FALLBACK_MMAP;
        return NULL;
    }
    /* Fresh anonymous memory is zero: only the non-zero fields are set. */
    ss->magic = HAK_SS_MAGIC;
    ss->free_mask = SS_ALL_USABLE_MASK;
    ss->free_slabs = HAK_SS_USABLE_SLABS;
    ss->tier = HAK_SS_HOT;
    for (size_t i = 0; i < HAK_SLABS_PER_SS; i++) {
        ss->slabs[i].class_index = HAK_SLAB_NO_CLASS;
        ss->slabs[i].purged_pages = (uint16_t)(HAK_SLAB_SIZE / HAK_PAGE);
    }
    /* Nothing past the header is touched yet: it counts as purged, so that
     * mapped - unmapped - purged + reused (the probes' resident size) counts
     * slabs from their carving on, not from the SuperSlab's mapping. */
    ss->slabs[0].purged_pages = (uint16_t)((HAK_SLAB_SIZE - SS_HEADER_BYTES) / HAK_PAGE);
    hak_os_purge_accounting((char *)ss + SS_HEADER_BYTES, HAK_SS_SIZE - SS_HEADER_BYTES, HAK_PT_TINY);
    hak_ss_map[(uintptr_t)ss >> HAK_SS_SHIFT] = HAK_MAP_SS;
    ss->all_next = ss_all;
    if (ss_all)
        ss_all->all_prev = ss;
    ss_all = ss;
    ss_mapped_count++;
    ss_empty_count++;
    HAK_COUNT(superslabs, 1);
    HAK_PROBE(ss_map, ss, HAK_SS_SIZE);
    list_push(ss, SS_ON_HOT);
    return ss;
}

static void ss_unmap(struct hak_superslab *ss)
{
    list_remove(ss);
    for (size_t i = HAK_SS_FIRST_SLAB; i < HAK_SLABS_PER_SS; i++)
        if (ss->slabs[i].list == HAK_SLAB_DIRTY)
            dirty_remove(&ss->slabs[i]);
    /* The unmap below covers the purged slabs too: count them back first so
     * that mapped - unmapped - purged + reused stays the resident size. */
    for (size_t i = 0; i < HAK_SLABS_PER_SS; i++)
        if (ss->slabs[i].purged_pages)
            hak_os_unpurge((char *)ss + i * HAK_SLAB_SIZE + (i ? 0 : SS_HEADER_BYTES),
                           (size_t)ss->slabs[i].purged_pages * HAK_PAGE, HAK_PT_TINY);
    hak_ss_map[(uintptr_t)ss >> HAK_SS_SHIFT] = 0;
    if (ss->all_prev)
        ss->all_prev->all_next = ss->all_next;
    else
        ss_all = ss->all_next;
    if (ss->all_next)
        ss->all_next->all_prev = ss->all_prev;
    ss_mapped_count--;
    ss_empty_count--;
    HAK_UNCOUNT(superslabs, 1);
    HAK_PROBE(ss_unmap, ss, HAK_SS_SIZE);
    hak_os_unmap(ss, HAK_SS_SIZE, HAK_PT_TINY);
}

void hak_ss_init(void)
{
    double down = hak_cfg_double(HAK_CFG_SS_TIER_DOWN_THRESHOLD);
    double up = hak_cfg_double(HAK_CFG_SS_TIER_UP_THRESHOLD);
    tier_down_slabs = (uint32_t)(down * HAK_SS_USABLE_SLABS);
    tier_up_slabs = (uint32_t)(up * HAK_SS_USABLE_SLABS + 0.999);
    if (tier_up_slabs <= tier_down_slabs)
        tier_up_slabs = tier_down_slabs + 1;
    decay_ms = hak_cfg_int(HAK_CFG_TINY_MEM_DIET) ? 0 : (uint32_t)hak_cfg_int(HAK_CFG_TINY_DECAY_MS);
    size_t min_ss = (size_t)hak_cfg_int(HAK_CFG_TINY_SS_MIN_MB) * HAK_MiB / HAK_SS_SIZE;
    if (min_ss > ss_empty_keep)
        ss_empty_keep = min_ss;
    if (!hak_cfg_int(HAK_CFG_TINY_SS_RESERVE))
        return;
    int reason;
    pthread_mutex_lock(&ss_lock);
    while (ss_mapped_count < min_ss && ss_map_new_locked(&reason))
        ;
    pthread_mutex_unlock(&ss_lock);
}

struct hak_slab *hak_ss_acquire_slab(unsigned class_index, uint32_t block_size, int *reason)
{
    bool tiny = class_index < HAK_NUM_TINY_CLASSES;
    pthread_mutex_lock(&ss_lock);
    if ((tiny && hak_cfg_is_set(HAK_CFG_TINY_SS_MAX_MB) &&
         tiny_slab_bytes + HAK_SLAB_SIZE > (size_t)hak_cfg_int(HAK_CFG_TINY_SS_MAX_MB) * HAK_MiB) ||
        (!tiny && hak_cfg_is_set(HAK_CFG_CAP_MID) &&
         mid_slab_blocks + HAK_SLAB_SIZE / block_size > (size_t)hak_cfg_int(HAK_CFG_CAP_MID))) {
        pthread_mutex_unlock(&ss_lock);
        *reason = HAK_FALLBACK_CAP;
        return NULL;
    }
    /* HOT first; a DRAINING SuperSlab only before mapping a new one, so
     * that draining never costs more memory. */
    struct hak_superslab *ss = ss_hot_with_free;
    if (!ss)
        ss = ss_draining;
    if (!ss)
        ss = ss_map_new_locked(reason);
    if (!ss) {
        pthread_mutex_unlock(&ss_lock);
        return NULL;
    }
    if (ss->free_slabs == HAK_SS_USABLE_SLABS)
        ss_empty_count--;
    /* A dirty slab first: its pages are still resident. */
    unsigned index = (unsigned)__builtin_ctz(ss->free_mask);
    for (uint32_t m = ss->free_mask; m; m &= m - 1) {
        unsigned i = (unsigned)__builtin_ctz(m);
        if (ss->slabs[i].list == HAK_SLAB_DIRTY) {
            index = i;
            break;
        }
    }
    if (ss->slabs[index].list == HAK_SLAB_DIRTY)
        dirty_remove(&ss->slabs[index]);
    ss->free_mask &= ~(1u << index);
    atomic_fetch_add_explicit(&slabs_in_use, 1, memory_order_relaxed);
    ss->free_slabs--;
    if (ss->tier == HAK_SS_DRAINING && HAK_SS_USABLE_SLABS - ss->free_slabs >= tier_up_slabs)
        set_tier(ss, HAK_SS_HOT);
    relist(ss);
    if (tiny)
        tiny_slab_bytes += HAK_SLAB_SIZE;
    else
        mid_slab_blocks += HAK_SLAB_SIZE / block_size;
    pthread_mutex_unlock(&ss_lock);

    struct hak_slab *slab = &ss->slabs[index];
    char *base = (char *)ss + (size_t)index * HAK_SLAB_SIZE;
    /* Pages its last owner scavenged, inside the resident extent, count as
     * resident again: the new class may carve them at any time. */
    uint16_t past_extent = (uint16_t)(HAK_SLAB_SIZE / HAK_PAGE - slab->resident_pages);
    if (slab->purged_pages > past_extent) {
        hak_os_unpurge(base, (size_t)(slab->purged_pages - past_extent) * HAK_PAGE, HAK_PT_TINY);
        slab->purged_pages = past_extent;
    }
    slab->class_index = (uint16_t)class_index;
    slab->block_size = (uint16_t)block_size;
    __atomic_store_n(&slab->bump, base, __ATOMIC_RELAXED); /* read by hakmem_owns() anywhere */
    slab->end = base + HAK_SLAB_SIZE / block_size * block_size;
    slab->free_list = NULL;
    slab->used = 0;
    slab->scav_mask = 0; /* counted in purged_pages, reused above */
    slab->scav_freed = 0;
    slab->list = HAK_SLAB_UNLISTED;
    slab->next = slab->prev = NULL;
    atomic_store_explicit(&slab->remote_head, NULL, memory_order_relaxed);
    HAK_PROBE(ss_slab_carve, class_index, block_size, base, ss);
    return slab;
}

void hak_ss_release_slab(struct hak_slab *slab)
{
    struct hak_superslab *ss = hak_ss_of(slab);
    size_t index = (size_t)(slab - ss->slabs);
    char *base = (char *)ss + index * HAK_SLAB_SIZE;
    unsigned class_index = slab->class_index;
    size_t touched = slab_touched(slab);
    atomic_store_explicit(&slab->owner_tp, 0, memory_order_relaxed);
    atomic_store_explicit(&slab->owner, NULL, memory_order_release);
    slab->class_index = HAK_SLAB_NO_CLASS;
    slab->free_list = NULL;
    slab->list = HAK_SLAB_UNLISTED;
    HAK_PROBE(ss_slab_release, class_index, base, touched);

    pthread_mutex_lock(&ss_lock);
    if (slab_dirty_bytes(slab)) {
        uint32_t now = (uint32_t)hak_now_ms();
        dirty_append(slab, now);
        decay_locked(now, dirty_max());
    }
    if (class_index < HAK_NUM_TINY_CLASSES)
        tiny_slab_bytes -= HAK_SLAB_SIZE;
    else
        mid_slab_blocks -= HAK_SLAB_SIZE / slab->block_size;
    ss->free_mask |= 1u << index;
    atomic_fetch_sub_explicit(&slabs_in_use, 1, memory_order_relaxed);
    ss->free_slabs++;
    if (ss->tier == HAK_SS_HOT && HAK_SS_USABLE_SLABS - ss->free_slabs <= tier_down_slabs)
        set_tier(ss, HAK_SS_DRAINING);
    relist(ss);
    if (ss->free_slabs == HAK_SS_USABLE_SLABS) {
        ss_empty_count++;
        if (hak_cfg_int(HAK_CFG_TINY_TRIM_SS) && ss_empty_count > ss_empty_keep)
            ss_unmap(ss);
    }
    pthread_mutex_unlock(&ss_lock);
}

/* malloc_trim: unmap every empty SuperSlab above the HAKMEM_TINY_SS_MIN_MB
 * reservation. */
size_t hak_ss_trim(void)
{
    size_t released = 0;
    size_t keep = ss_empty_keep > 1 ? ss_empty_keep : 0;
    pthread_mutex_lock(&ss_lock);
    decay_locked((uint32_t)hak_now_ms(), 0);
    for (uint32_t which = SS_ON_HOT; which <= SS_ON_DRAINING; which++) {
        for (struct hak_superslab *ss = *list_head(which), *next; ss; ss = next) {
            next = ss->next;
            if (ss->free_slabs == HAK_SS_USABLE_SLABS && ss_empty_count > keep) {
                ss_unmap(ss);
                released += HAK_SS_SIZE;
            }
        }
    }
    pthread_mutex_unlock(&ss_lock);
    return released;
}

void hak_ss_disown(struct hak_heap *heap)
{
    for (struct hak_superslab *ss = ss_all; ss; ss = ss->all_next) {
        for (size_t i = HAK_SS_FIRST_SLAB; i < HAK_SLABS_PER_SS; i++) {
            struct hak_slab *slab = &ss->slabs[i];
            if (atomic_load_explicit(&slab->owner, memory_order_relaxed) == heap) {
                atomic_store_explicit(&slab->owner_tp, 0, memory_order_relaxed);
                atomic_store_explicit(&slab->owner, NULL, memory_order_relaxed);
                slab->list = HAK_SLAB_UNLISTED;
            }
        }
    }
}
