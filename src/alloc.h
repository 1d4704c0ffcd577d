/* The dispatcher behind every allocation entry point: the size picks the
 * tier, the address of a freed block finds its owner. The fast paths are
 * inlined into malloc and free; everything else is out of line. */
#ifndef HAKMEM_ALLOC_H
#define HAKMEM_ALLOC_H

#include <errno.h>

#include "tiny.h"

void *hak_alloc_slow(size_t size, size_t align);
void hak_free_slow(void *p);

HAK_INLINE void *hak_alloc_inline(size_t size)
{
    /* Tiny first: its class comes from one table load. */
    if (HAK_LIKELY(size <= HAK_TINY_MAX))
        return hak_small_alloc_bin(hak_small_bin_lut[size + 7], size);
    if (size <= HAK_SMALL_MAX)
        return hak_small_alloc_inline(size);
    return hak_alloc_slow(size, HAK_MIN_ALIGN);
}

HAK_INLINE void hak_free_inline(void *p)
{
    if (HAK_LIKELY(hak_ss_contains(p))) {
        hak_small_free_inline(p);
        return;
    }
    if (p)
        hak_free_slow(p);
}

#endif
