/* SuperSlabs: 2 MiB regions aligned on 2 MiB, carved into 64 KiB slabs,
 * each slab serving one size class. The owner of any pointer is found
 * in O(1) with no per-block header: a byte map over the address space
 * says whether an aligned 2 MiB region is a SuperSlab, the region's
 * header (in its first slab) describes every slab. */
#ifndef HAKMEM_SUPERSLAB_H
#define HAKMEM_SUPERSLAB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "hakmem_internal.h"

#define HAK_SS_SHIFT 21
#define HAK_SS_SIZE ((size_t)1 << HAK_SS_SHIFT)
#define HAK_SLAB_SHIFT 16
#define HAK_SLAB_SIZE ((size_t)1 << HAK_SLAB_SHIFT)
#define HAK_SLABS_PER_SS (HAK_SS_SIZE / HAK_SLAB_SIZE)
/* Slab 0 holds the header; its untouched pages never become resident. */
#define HAK_SS_FIRST_SLAB 1
#define HAK_SS_USABLE_SLABS (HAK_SLABS_PER_SS - HAK_SS_FIRST_SLAB)
#define HAK_SLAB_NO_CLASS 0xffff

/* Addresses hakmem can map: 47-bit user space (x86-64 4-level paging; a
 * 57-bit address is simply never a SuperSlab). */
#define HAK_ADDR_BITS 47

struct hak_superslab;
struct hak_heap;

/* Which list a slab is on (slab->list). */
enum hak_slab_list {
    HAK_SLAB_UNLISTED = 0,
    HAK_SLAB_AVAIL = 1,     /* owner's list of slabs with a local block */
    HAK_SLAB_FULL = 2,      /* owner's list of slabs with none */
    HAK_SLAB_ABANDONED = 3, /* central list of its class: owner exited */
    HAK_SLAB_DIRTY = 4,     /* free, pages still resident, on the decay list */
};

/* A slab belongs to one thread (its owner heap) or, after that thread has
 * exited, to its class's abandoned list. Only the owner touches free_list,
 * bump and used; any other thread frees into remote_head, a lock-free
 * stack the owner (or an adopter) takes whole with one exchange. */
struct hak_slab {
    /* The owner's cache line. */
    _Atomic(uintptr_t) owner_tp; /* owner thread's thread pointer (%fs); 0: free or abandoned */
    uint16_t class_index;        /* HAK_SLAB_NO_CLASS while the slab is free */
    uint16_t list;               /* enum hak_slab_list */
    uint32_t used;               /* blocks out: live, cached, or on remote_head */
    void *free_list;             /* owner-local freed blocks, linked through their first word */
    char *bump;                  /* next never-used block */
    char *end;                   /* end of the last whole block */
    uint16_t block_size;
    uint16_t purged_pages; /* returned with madvise and not touched since */
    int32_t bin_tpoff;     /* its class's thread-cache bin, from %fs (tiny.h) */
    struct hak_slab *next, *prev;
    /* Written by other threads: a cache line of its own. */
    _Atomic(void *) remote_head __attribute__((aligned(64)));
    _Atomic uint32_t remote_count;    /* approximate: only paces draining */
    _Atomic(struct hak_heap *) owner; /* owner heap, for remote frees to notify; NULL with owner_tp */
    uint32_t released_ms;             /* free and dirty: when it was released (decay) */
    /* Owner only. Pages of an in-use slab that held only free blocks and
     * were purged (tiny.c, scavenge): their blocks are off the free list
     * until the page is reclaimed. Bit i: the slab's i-th page. */
    uint16_t scav_mask;
    /* Blocks freed into the slab since it was last scavenged (saturates):
     * a slab nobody freed into has no new free page to find. */
    uint16_t scav_freed;
    /* The slab's resident extent, in pages from its start: what its
     * classes carved since it was last purged (counted as resident, the
     * rest of the slab as purged). A dirty slab carved again keeps it
     * whether or not its new class gets that far (superslab.c). */
    uint16_t resident_pages;
} __attribute__((aligned(128)));
/* A power of two: free finds the slab with a shift and a mask. */
_Static_assert(sizeof(struct hak_slab) == 128, "hak_slab_of assumes 128-byte slab records");

/* A doubly linked list of slabs through slab->next/prev: a thread's
 * lists of a class, a class's abandoned slabs, the free-but-dirty slabs.
 * A slab is on one list at a time; slab->list says which. */
struct slab_list {
    struct hak_slab *head, *tail;
};

static inline void slab_push(struct slab_list *list, struct hak_slab *slab, uint16_t which)
{
    slab->prev = NULL;
    slab->next = list->head;
    if (list->head)
        list->head->prev = slab;
    else
        list->tail = slab;
    list->head = slab;
    slab->list = which;
}

static inline void slab_append(struct slab_list *list, struct hak_slab *slab, uint16_t which)
{
    slab->next = NULL;
    slab->prev = list->tail;
    if (list->tail)
        list->tail->next = slab;
    else
        list->head = slab;
    list->tail = slab;
    slab->list = which;
}

static inline void slab_remove(struct slab_list *list, struct hak_slab *slab)
{
    if (slab->prev)
        slab->prev->next = slab->next;
    else
        list->head = slab->next;
    if (slab->next)
        slab->next->prev = slab->prev;
    else
        list->tail = slab->prev;
    slab->next = slab->prev = NULL;
    slab->list = HAK_SLAB_UNLISTED;
}

/* SuperSlab tiers: HOT SuperSlabs take new slabs; one whose utilisation
 * (slabs in use / usable slabs) falls to HAKMEM_SS_TIER_DOWN_THRESHOLD
 * turns DRAINING and is carved only when no HOT one has a free slab, so
 * that it can empty and go back to the OS; it turns HOT again at
 * HAKMEM_SS_TIER_UP_THRESHOLD. */
enum hak_ss_tier { HAK_SS_HOT = 0, HAK_SS_DRAINING = 1 };

/* The slab records come first, so a slab's record is at the SuperSlab
 * base plus index * 128 (an OR on free's path); record 0 describes the
 * header slab itself and is never used. */
struct hak_superslab {
    struct hak_slab slabs[HAK_SLABS_PER_SS];
    uint64_t magic;
    uint32_t free_slabs; /* count of slabs with no class */
    uint32_t free_mask;  /* bit i set: slab i is free */
    uint32_t tier;       /* enum hak_ss_tier */
    uint32_t on_list;    /* 0 none, 1 HOT-with-free, 2 DRAINING */
    struct hak_superslab *next, *prev;
    struct hak_superslab *all_next, *all_prev; /* every mapped SuperSlab */
};

#define HAK_SS_MAGIC 0x48414b4d53536c62ull /* "HAKMSSlb" */

/* One byte per 2 MiB of address space: 64 MiB of .bss whose pages become
 * resident only where SuperSlabs live (a page covers 8 GiB of addresses).
 * Static, so the lookup on every free is one RIP-relative load and it is
 * valid before initialisation. */
#define HAK_SS_MAP_ENTRIES ((size_t)1 << (HAK_ADDR_BITS - HAK_SS_SHIFT))
extern uint8_t hak_ss_map[HAK_SS_MAP_ENTRIES];
/* hak_ss_map values: 0 not hakmem's, HAK_MAP_SS a SuperSlab, HAK_MAP_L25 + k
 * the k-th 2 MiB chunk of an L25 run (l25.c). */
#define HAK_MAP_SS 1
#define HAK_MAP_L25 2

static inline struct hak_superslab *hak_ss_of(const void *p)
{
    return (struct hak_superslab *)((uintptr_t)p & ~(uintptr_t)(HAK_SS_SIZE - 1));
}

/* True when p lies in a SuperSlab. One byte load: this is on every free. */
static inline bool hak_ss_contains(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return (a >> HAK_SS_SHIFT) < HAK_SS_MAP_ENTRIES && hak_ss_map[a >> HAK_SS_SHIFT] == HAK_MAP_SS;
}

static inline struct hak_slab *hak_slab_of(const void *p)
{
    /* Written out so that the index scaling folds into one shift and mask
     * (sizeof(struct hak_slab) is a power of two). */
    uintptr_t a = (uintptr_t)p;
    uintptr_t offset = (a >> (HAK_SLAB_SHIFT - 7)) & ((HAK_SLABS_PER_SS - 1) << 7);
    return (struct hak_slab *)((a & ~(uintptr_t)(HAK_SS_SIZE - 1)) | offset);
}

static inline char *hak_slab_base(const struct hak_slab *slab)
{
    struct hak_superslab *ss = hak_ss_of(slab);
    size_t index = (size_t)(slab - ss->slabs);
    return (char *)ss + index * HAK_SLAB_SIZE;
}

/* Get a free slab for class_index (NULL with *reason set when the cap is
 * reached or the OS refuses memory). Takes the SuperSlab lock. */
struct hak_slab *hak_ss_acquire_slab(unsigned class_index, uint32_t block_size, int *reason);
/* Give an empty slab back to its SuperSlab; purges its pages. */
void hak_ss_release_slab(struct hak_slab *slab);
size_t hak_ss_trim(void);
/* Pages from the slab's start to its bump pointer: what its class carved. */
static inline uint32_t hak_slab_carved_pages(const struct hak_slab *slab)
{
    return (uint32_t)(hak_align_up((size_t)(slab->bump - hak_slab_base(slab)), HAK_PAGE) / HAK_PAGE);
}
/* The owner carved its slab up to bump: the slab's resident extent grows
 * to it, counted back from purged (once per refill that carves past it;
 * growing it to the class's last block at once counted pages no block
 * had reached as resident, and purged them again at release). */
void hak_ss_slab_extend(struct hak_slab *slab);
static inline void hak_ss_slab_carved(struct hak_slab *slab, const char *bump)
{
    if (HAK_UNLIKELY(bump > hak_slab_base(slab) + (size_t)slab->resident_pages * HAK_PAGE))
        hak_ss_slab_extend(slab);
}
/* Owner (or the decay thread with the owner shut out): purge the pages of
 * a slab in use past what its class has carved (left by an earlier
 * class, or reached by none yet). Returns the bytes purged. */
size_t hak_ss_slab_purge_tail(struct hak_slab *slab);
/* Purge every free slab now (the decay thread, after an idle thread's
 * caches came back). */
void hak_ss_purge_dirty(void);
/* Bytes of slabs in use (carved for any class), read without the lock. */
size_t hak_ss_slab_bytes(void);
/* Purge the free slabs idle past HAKMEM_TINY_DECAY_MS (cheap when none). */
void hak_ss_decay(void);
/* Clear the owner of every slab `heap` owns (fork child, no other thread). */
void hak_ss_disown(struct hak_heap *heap);
/* Map HAKMEM_TINY_SS_MIN_MB of SuperSlabs when HAKMEM_TINY_SS_RESERVE=1. */
void hak_ss_init(void);
void hak_ss_lock(void);
void hak_ss_unlock(void);
void hak_ss_reset_lock(void);

#endif
