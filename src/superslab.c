/* SuperSlab lifecycle: map, carve into slabs, take slabs back, purge
 * them, and unmap SuperSlabs that have emptied. */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "probes.h"
#include "size_class.h"
#include "superslab.h"

uint8_t hak_ss_map[HAK_SS_MAP_ENTRIES];

static pthread_mutex_t ss_lock = PTHREAD_MUTEX_INITIALIZER;
/* SuperSlabs with at least one free slab. */
static struct hak_superslab *ss_with_free;
static size_t ss_mapped_count;
static size_t ss_empty_count;
/* Bytes of slabs held by Tiny classes: what HAKMEM_TINY_SS_MAX_MB caps. */
static size_t tiny_slab_bytes;

#define SS_ALL_USABLE_MASK ((uint32_t)(~0u) & ~((1u << HAK_SS_FIRST_SLAB) - 1))
/* Empty SuperSlabs kept mapped (their slabs purged) so that a live set
 * hovering around a SuperSlab boundary does not map and unmap each time. */
#define SS_EMPTY_KEEP 1

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

static void list_push(struct hak_superslab *ss)
{
    ss->prev = NULL;
    ss->next = ss_with_free;
    if (ss_with_free)
        ss_with_free->prev = ss;
    ss_with_free = ss;
}

static void list_remove(struct hak_superslab *ss)
{
    if (ss->prev)
        ss->prev->next = ss->next;
    else
        ss_with_free = ss->next;
    if (ss->next)
        ss->next->prev = ss->prev;
    ss->next = ss->prev = NULL;
}

static struct hak_superslab *ss_map_new(int *reason)
{
    struct hak_superslab *ss = hak_os_map_aligned(HAK_SS_SIZE, HAK_SS_SIZE, HAK_PT_TINY);
    if (!ss) {
        *reason = HAK_FALLBACK_MMAP;
        return NULL;
    }
    /* Fresh anonymous memory is zero: only the non-zero fields are set. */
    ss->magic = HAK_SS_MAGIC;
    ss->free_mask = SS_ALL_USABLE_MASK;
    ss->free_slabs = HAK_SS_USABLE_SLABS;
    for (size_t i = 0; i < HAK_SLABS_PER_SS; i++) {
        ss->slabs[i].ss = ss;
        ss->slabs[i].class_index = HAK_SLAB_NO_CLASS;
    }
    hak_ss_map[(uintptr_t)ss >> HAK_SS_SHIFT] = 1;
    ss_mapped_count++;
    ss_empty_count++;
    HAK_COUNT(superslabs, 1);
    HAK_PROBE(ss_map, ss, HAK_SS_SIZE);
    list_push(ss);
    return ss;
}

static void ss_unmap(struct hak_superslab *ss)
{
    list_remove(ss);
    /* The unmap below covers the purged slabs too: count them back first so
     * that mapped - unmapped - purged + reused stays the resident size. */
    for (size_t i = HAK_SS_FIRST_SLAB; i < HAK_SLABS_PER_SS; i++)
        if (ss->slabs[i].purged_bytes)
            hak_os_unpurge((char *)ss + i * HAK_SLAB_SIZE, ss->slabs[i].purged_bytes, HAK_PT_TINY);
    hak_ss_map[(uintptr_t)ss >> HAK_SS_SHIFT] = 0;
    ss_mapped_count--;
    ss_empty_count--;
    HAK_UNCOUNT(superslabs, 1);
    HAK_PROBE(ss_unmap, ss, HAK_SS_SIZE);
    hak_os_unmap(ss, HAK_SS_SIZE, HAK_PT_TINY);
}

struct hak_slab *hak_ss_acquire_slab(unsigned class_index, uint32_t block_size, int *reason)
{
    bool tiny = class_index < HAK_NUM_TINY_CLASSES;
    pthread_mutex_lock(&ss_lock);
    if (tiny && hak_cfg_is_set(HAK_CFG_TINY_SS_MAX_MB) &&
        tiny_slab_bytes + HAK_SLAB_SIZE > (size_t)hak_cfg_int(HAK_CFG_TINY_SS_MAX_MB) * HAK_MiB) {
        pthread_mutex_unlock(&ss_lock);
        *reason = HAK_FALLBACK_CAP;
        return NULL;
    }
    struct hak_superslab *ss = ss_with_free;
    if (!ss)
        ss = ss_map_new(reason);
    if (!ss) {
        pthread_mutex_unlock(&ss_lock);
        return NULL;
    }
    if (ss->free_slabs == HAK_SS_USABLE_SLABS)
        ss_empty_count--;
    unsigned index = (unsigned)__builtin_ctz(ss->free_mask);
    ss->free_mask &= ~(1u << index);
    if (--ss->free_slabs == 0)
        list_remove(ss);
    if (tiny)
        tiny_slab_bytes += HAK_SLAB_SIZE;
    pthread_mutex_unlock(&ss_lock);

    struct hak_slab *slab = &ss->slabs[index];
    char *base = (char *)ss + (size_t)index * HAK_SLAB_SIZE;
    if (slab->purged_bytes) {
        hak_os_unpurge(base, slab->purged_bytes, HAK_PT_TINY);
        slab->purged_bytes = 0;
    }
    slab->class_index = (uint16_t)class_index;
    slab->block_size = block_size;
    slab->capacity = (uint32_t)(HAK_SLAB_SIZE / block_size);
    slab->bump = base;
    slab->end = base + (size_t)slab->capacity * block_size;
    slab->free_list = NULL;
    slab->used = 0;
    slab->on_partial = 0;
    slab->next = slab->prev = NULL;
    HAK_PROBE(ss_slab_carve, class_index, block_size, base, ss);
    return slab;
}

void hak_ss_release_slab(struct hak_slab *slab)
{
    struct hak_superslab *ss = slab->ss;
    size_t index = (size_t)(slab - ss->slabs);
    char *base = (char *)ss + index * HAK_SLAB_SIZE;
    unsigned class_index = slab->class_index;
    /* Only the part that was ever handed out can be resident. */
    size_t touched = hak_align_up((size_t)(slab->bump - base), HAK_PAGE);
    slab->class_index = HAK_SLAB_NO_CLASS;
    slab->free_list = NULL;
    if (touched) {
        hak_os_purge(base, touched, HAK_PT_TINY);
        slab->purged_bytes = (uint32_t)touched;
    }
    HAK_PROBE(ss_slab_release, class_index, base, touched);

    pthread_mutex_lock(&ss_lock);
    if (class_index < HAK_NUM_TINY_CLASSES)
        tiny_slab_bytes -= HAK_SLAB_SIZE;
    ss->free_mask |= 1u << index;
    if (ss->free_slabs++ == 0)
        list_push(ss);
    if (ss->free_slabs == HAK_SS_USABLE_SLABS) {
        ss_empty_count++;
        if (hak_cfg_int(HAK_CFG_TINY_TRIM_SS) && ss_empty_count > SS_EMPTY_KEEP)
            ss_unmap(ss);
    }
    pthread_mutex_unlock(&ss_lock);
}

/* malloc_trim: unmap every empty SuperSlab. */
size_t hak_ss_trim(void)
{
    size_t released = 0;
    pthread_mutex_lock(&ss_lock);
    for (struct hak_superslab *ss = ss_with_free, *next; ss; ss = next) {
        next = ss->next;
        if (ss->free_slabs == HAK_SS_USABLE_SLABS) {
            ss_unmap(ss);
            released += HAK_SS_SIZE;
        }
    }
    pthread_mutex_unlock(&ss_lock);
    return released;
}
