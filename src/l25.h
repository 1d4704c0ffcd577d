/* The L25 pool (l25.c): 32 KiB < size <= 1 MiB, page-aligned blocks, each
 * a span of whole pages. */
#ifndef HAKMEM_L25_H
#define HAKMEM_L25_H

#include "superslab.h"

#define HAK_L25_CLASSES 20

/* True when p lies in an L25 run (one byte load, like hak_ss_contains). */
static inline bool hak_l25_contains(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return (a >> HAK_SS_SHIFT) < HAK_SS_MAP_ENTRIES && hak_ss_map[a >> HAK_SS_SHIFT] >= HAK_MAP_L25;
}

void hak_l25_init(void);
unsigned hak_l25_class_of(size_t size);
size_t hak_l25_class_size(unsigned class_index);
/* realloc keeps a block of `usable` bytes for a request of `size` (32 KiB
 * - 1 MiB) that it exceeds by at most an eighth of the request's pages
 * (like a thread-cache hit), or that is no larger than the request's
 * class (a block realloc grew to its class's size, filling up by appends). */
static inline bool hak_l25_serves(size_t usable, size_t size)
{
    size_t need = (size + HAK_PAGE - 1) / HAK_PAGE;
    return size <= usable &&
           (usable / HAK_PAGE <= need + need / 8 || usable <= hak_l25_class_size(hak_l25_class_of(size)));
}
/* NULL (a pool_fallback probe fired) when the pool cannot serve: the
 * caller falls back to the Large tier. */
void *hak_l25_alloc(size_t size);
void hak_l25_free(void *p);
size_t hak_l25_usable(const void *p);
bool hak_l25_grow(void *p, size_t size);
bool hak_l25_is_live(const void *p);
void hak_l25_thread_flush(bool exiting);
void hak_l25_decay(void);
size_t hak_l25_trim(void);
void hak_l25_purge_all(void);
/* The thread is inside the pool (a signal handler's malloc must not take its lock). */
bool hak_l25_busy(void);
void hak_l25_lock_all(void);
void hak_l25_unlock_all(void);
void hak_l25_reset_after_fork(void);

#endif
