/* The thread front of the SuperSlab tiers: one intrusive singly linked
 * free list (SLL) per size class per thread. A malloc or free that hits
 * it touches no lock, no atomic and no probe; everything else (magazine,
 * refill, spill, remote free, routing, thread start and exit) is in
 * tiny.c's slow paths.
 *
 * The SLL only ever holds blocks of slabs this thread owns: free checks
 * the slab's owner, so a block freed by another thread goes back to its
 * owner through the slab's remote list instead of being reused here (no
 * false sharing of a cache line between the allocating thread and the
 * freeing one, and slabs can empty and be returned). */
#ifndef HAKMEM_TINY_H
#define HAKMEM_TINY_H

#include "size_class.h"
#include "superslab.h"

struct hak_tc_bin {
    void *head;
    /* Blocks the SLL may still take before it spills: its limit minus its
     * length (one field, so free tests and updates a single word). The
     * limit is 0, so every free takes the slow path, before the thread has
     * started, after it exited, and for a class routed away from the Tiny
     * tier or served by another front. Negative only transiently. */
    int32_t room;
    uint32_t unused;
};

/* One TLS object, so that malloc and free find the bins and the heap
 * from a single thread-pointer offset. */
struct hak_tls {
    struct hak_tc_bin bins[HAK_NUM_CLASSES];
    /* This thread's heap (slow paths only), HAK_NO_HEAP before the thread
     * has one and after it exited. free's fast path recognises the
     * thread's own slabs by the thread pointer instead (one load fewer);
     * a slab's owner_tp is cleared whenever it changes hands, so a thread
     * pointer reused by a later thread never matches a stale slab. */
    struct hak_heap *heap;
    /* The bin of the thread's sparse slabs (tiny.c, maybe_set_sparse): it
     * never takes a block (room 0), so free's fast path sends every block
     * of such a slab to the slow path, at no cost to the others. */
    struct hak_tc_bin sparse_bin;
    /* The Mid classes' pop and the decay thread's cut of an idle thread's
     * Mid SLLs (hak_mid_pop, hak_small_reclaim_idle): mid_busy is set by
     * the pop while it runs, mid_stop by the decay thread while it cuts. */
    volatile uint8_t mid_busy;
    volatile uint8_t mid_stop;
};
extern HAK_TLS struct hak_tls hak_tls;
#define hak_tc_bins (hak_tls.bins)
#define hak_my_heap (hak_tls.heap)
#define HAK_NO_HEAP ((struct hak_heap *)1)

/* The fast paths address a bin as an offset from the thread pointer
 * (%fs): the TLS block of an initial-exec variable sits at the same
 * offset in every thread, so a slab can carry its class's bin offset
 * (hak_slab.bin_tpoff) and free reaches the bin without computing the
 * thread's TLS address. Saves three instructions per free, one per
 * malloc (bench-instr). */
typedef struct hak_tc_bin __seg_fs hak_fs_bin;

HAK_INLINE intptr_t hak_tls_tpoff(void)
{
    return (intptr_t)&hak_tls - (intptr_t)__builtin_thread_pointer();
}

HAK_INLINE hak_fs_bin *hak_fs_bin_at(intptr_t tpoff)
{
    return (hak_fs_bin *)(uintptr_t)tpoff;
}

void *hak_small_alloc_slow(unsigned class_index, size_t size);
void hak_small_free_slow(void *p);

/* bin_offset: the class's bin, as a byte offset into hak_tls.bins. */
HAK_INLINE void *hak_small_alloc_bin(size_t bin_offset, size_t size)
{
    hak_fs_bin *bin = hak_fs_bin_at(hak_tls_tpoff() + (intptr_t)bin_offset);
    void *p = bin->head;
    if (HAK_LIKELY(p != NULL)) {
        bin->head = *(void **)p;
        bin->room++;
#if HAKMEM_ENABLE_STATS
        HAK_COUNT(tiny_hits, 1);
#endif
        return p;
    }
    return hak_small_alloc_slow((unsigned)(bin_offset / sizeof(struct hak_tc_bin)), size);
}

typedef struct hak_tls __seg_fs hak_fs_tls;

HAK_INLINE hak_fs_tls *hak_fs_tls_self(void)
{
    return (hak_fs_tls *)(uintptr_t)hak_tls_tpoff();
}

/* The pop of a Mid class (1-32 KiB). An idle thread's Mid SLLs can hold
 * megabytes (up to HAKMEM_WMAX_MID per class), so the decay thread cuts
 * them, all but their first block, while their thread sleeps
 * (hak_small_reclaim_idle). The pop announces itself in mid_busy and
 * backs off when mid_stop is set: a Dekker handshake whose heavy half is
 * the decay thread's membarrier, as for the slow paths' idle gate. Either
 * the decay thread sees mid_busy and leaves the thread alone, or the pop
 * sees mid_stop and takes the slow path, which waits at the gate. free's
 * push needs no flag: the cut leaves a bin's head where it is, and a push
 * touches only the head. The Tiny classes' pop stays bare: their SLLs
 * hold at most 16 KiB a class, 296 KiB a thread, and a whole Tiny
 * malloc is 14 instructions. Here it cost bench mixed_mid 4.4 % more
 * instructions (callgrind, scale 0.05), which hak_mid_class_lut won back. */
HAK_INLINE void *hak_mid_pop(hak_fs_tls *tls, unsigned class_index)
{
    hak_fs_bin *bin = &tls->bins[class_index];
    /* Restored, not cleared: a signal handler's malloc may run a pop of
     * its own inside this one. */
    uint8_t outer = tls->mid_busy;
    tls->mid_busy = 1;
    atomic_signal_fence(memory_order_seq_cst);
    HAK_TSAN_ACQUIRE(&hak_tls);
    void *p = tls->mid_stop ? NULL : bin->head;
    if (HAK_LIKELY(p != NULL)) {
        bin->head = *(void **)p;
        bin->room++;
    }
    HAK_TSAN_RELEASE(&hak_tls);
    atomic_signal_fence(memory_order_seq_cst);
    tls->mid_busy = outer;
    return p;
}

/* Any class (Mid sizes, memalign, the API's own entry points); the Tiny
 * fast path is hak_small_alloc_bin. */
HAK_INLINE void *hak_small_alloc_inline(size_t size)
{
    unsigned class_index = hak_size_to_class(size);
    void *p = hak_mid_pop(hak_fs_tls_self(), class_index);
    if (HAK_LIKELY(p != NULL)) {
#if HAKMEM_ENABLE_STATS
        HAK_COUNT(tiny_hits, 1);
#endif
        return p;
    }
    return hak_small_alloc_slow(class_index, size);
}

/* p is known to lie in a SuperSlab: its class's size, 0 in a free slab
 * (realloc's in-place test, without a call). */
HAK_INLINE size_t hak_small_usable_inline(const void *p)
{
    unsigned c = hak_slab_of(p)->class_index;
    return c < HAK_NUM_CLASSES ? hak_class_size[c] : 0;
}

/* p is known to lie in a SuperSlab. */
HAK_INLINE void hak_small_free_inline(void *p)
{
    struct hak_slab *slab = hak_slab_of(p);
    if (HAK_LIKELY(atomic_load_explicit(&slab->owner_tp, memory_order_relaxed) ==
                   (uintptr_t)__builtin_thread_pointer())) {
        hak_fs_bin *bin = hak_fs_bin_at(__atomic_load_n(&slab->bin_tpoff, __ATOMIC_RELAXED));
        if (HAK_LIKELY(bin->room > 0)) {
            *(void **)p = bin->head;
            /* The decay thread's cut reads the head's link
             * (hak_small_reclaim_idle): the link is written first. */
            atomic_signal_fence(memory_order_release);
            bin->head = p;
            bin->room--;
            HAK_TSAN_RELEASE(&hak_tls);
            return;
        }
    }
    hak_small_free_slow(p);
}

#endif
