/* The thread front of the SuperSlab tiers: one intrusive singly linked
 * free list (SLL) per size class per thread. A malloc or free that hits
 * it touches no lock, no atomic and no probe; everything else (refill,
 * spill, routing, thread start and exit) is in tiny.c's slow paths. */
#ifndef HAKMEM_TINY_H
#define HAKMEM_TINY_H

#include "size_class.h"
#include "superslab.h"

struct hak_tc_bin {
    void *head;
    uint32_t count;
    /* A free that finds count == limit spills; limit 0 sends every call to
     * the slow path (thread not registered yet, exited, or class routed
     * away from the Tiny tier). */
    uint32_t limit;
};

extern HAK_TLS struct hak_tc_bin hak_tc_bins[HAK_NUM_CLASSES];

void *hak_small_alloc_slow(unsigned class_index, size_t size);
void hak_small_free_slow(void *p, unsigned class_index);

HAK_INLINE void *hak_small_alloc_inline(size_t size)
{
    unsigned class_index = hak_size_to_class(size);
    struct hak_tc_bin *bin = &hak_tc_bins[class_index];
    void *p = bin->head;
    if (HAK_LIKELY(p != NULL)) {
        bin->head = *(void **)p;
        bin->count--;
#if HAKMEM_ENABLE_STATS
        HAK_COUNT(tiny_hits, 1);
#endif
        return p;
    }
    return hak_small_alloc_slow(class_index, size);
}

/* p is known to lie in a SuperSlab. */
HAK_INLINE void hak_small_free_inline(void *p)
{
    unsigned class_index = hak_slab_of(p)->class_index;
    if (HAK_LIKELY(class_index < HAK_NUM_CLASSES)) {
        struct hak_tc_bin *bin = &hak_tc_bins[class_index];
        if (HAK_LIKELY(bin->count < bin->limit)) {
            *(void **)p = bin->head;
            bin->head = p;
            bin->count++;
            return;
        }
    }
    hak_small_free_slow(p, class_index);
}

#endif
