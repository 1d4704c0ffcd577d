/* SuperSlabs: 2 MiB regions aligned on 2 MiB, carved into 64 KiB slabs,
 * each slab serving one size class. The owner of any pointer is found
 * in O(1) with no per-block header: a byte map over the address space
 * says whether an aligned 2 MiB region is a SuperSlab, the region's
 * header (in its first slab) describes every slab. */
#ifndef HAKMEM_SUPERSLAB_H
#define HAKMEM_SUPERSLAB_H

#include <pthread.h>

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

struct hak_slab {
    void *free_list;        /* freed blocks, linked through their first word */
    char *bump;             /* next never-used block */
    char *end;              /* end of the last whole block */
    uint32_t used;          /* blocks out of the slab (live or in a thread cache) */
    uint32_t capacity;
    uint32_t block_size;
    uint16_t class_index;   /* HAK_SLAB_NO_CLASS while the slab is free */
    uint16_t on_partial;    /* linked on its class's partial list */
    uint32_t purged_bytes;  /* returned with madvise and not touched since */
    struct hak_slab *next, *prev;
    struct hak_superslab *ss;
};

struct hak_superslab {
    uint64_t magic;
    uint32_t free_slabs;  /* count of slabs with no class */
    uint32_t free_mask;   /* bit i set: slab i is free */
    struct hak_superslab *next, *prev;
    struct hak_slab slabs[HAK_SLABS_PER_SS];
};

#define HAK_SS_MAGIC 0x48414b4d53536c62ull /* "HAKMSSlb" */

/* One byte per 2 MiB of address space: 64 MiB of .bss whose pages become
 * resident only where SuperSlabs live (a page covers 8 GiB of addresses).
 * Static, so the lookup on every free is one RIP-relative load and it is
 * valid before initialisation. */
#define HAK_SS_MAP_ENTRIES ((size_t)1 << (HAK_ADDR_BITS - HAK_SS_SHIFT))
extern uint8_t hak_ss_map[HAK_SS_MAP_ENTRIES];

static inline struct hak_superslab *hak_ss_of(const void *p)
{
    return (struct hak_superslab *)((uintptr_t)p & ~(uintptr_t)(HAK_SS_SIZE - 1));
}

/* True when p lies in a SuperSlab. One byte load: this is on every free. */
static inline bool hak_ss_contains(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return (a >> HAK_ADDR_BITS) == 0 && hak_ss_map[a >> HAK_SS_SHIFT] != 0;
}

static inline struct hak_slab *hak_slab_of(const void *p)
{
    struct hak_superslab *ss = hak_ss_of(p);
    return &ss->slabs[((uintptr_t)p >> HAK_SLAB_SHIFT) & (HAK_SLABS_PER_SS - 1)];
}

static inline char *hak_slab_base(const struct hak_slab *slab)
{
    size_t index = (size_t)(slab - slab->ss->slabs);
    return (char *)slab->ss + index * HAK_SLAB_SIZE;
}

/* Get a free slab for class_index (NULL with *reason set when the cap is
 * reached or the OS refuses memory). Takes the SuperSlab lock. */
struct hak_slab *hak_ss_acquire_slab(unsigned class_index, uint32_t block_size, int *reason);
/* Give an empty slab back to its SuperSlab; purges its pages. */
void hak_ss_release_slab(struct hak_slab *slab);
size_t hak_ss_trim(void);
void hak_ss_lock(void);
void hak_ss_unlock(void);
void hak_ss_reset_lock(void);

#endif
