/* Slow paths of the SuperSlab tiers.
 *
 * Each thread has a heap: per class, the slabs it owns (a list of slabs
 * with a local free block, a list of full ones), a magazine (array of
 * blocks) behind the SLL, and flags other threads raise when they free
 * into one of its slabs. The path of a block:
 *
 *   malloc: SLL -> magazine -> owned slab (local free list, bump, remote
 *           list) -> slab adopted from an exited thread -> fresh slab
 *           from a SuperSlab -> next tier (fallback probe with a reason)
 *   free by the owner: SLL -> magazine (half the SLL when over capacity)
 *           -> the slab's local free list (half the magazine); a block
 *           of a sparse slab goes straight to its slab (maybe_set_sparse)
 *   free by any other thread: the slab's remote list (one CAS), or, if
 *           the slab's thread has exited and this one has a heap, the
 *           slab is adopted and the free is the owner's
 *
 * Nothing on the owner's side takes a lock: the central (per-class)
 * lock guards only abandoned slabs, and the SuperSlab lock only the
 * carving and release of whole slabs. Empty slabs beyond a small reserve
 * go back to their SuperSlab at once (superslab.c purges them after
 * HAKMEM_TINY_DECAY_MS), and empty SuperSlabs are unmapped
 * (HAKMEM_TINY_TRIM_SS=1, the default).
 *
 * Reentrancy: while a thread is inside these slow paths (tc_busy), a
 * nested malloc (a signal handler, an interposed mmap) is served by the
 * Large tier and reported with reason "reentrant"; a nested free goes to
 * the slab's remote list. Neither touches the structures being edited. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "observe.h"
#include "probes.h"
#include "tiny.h"

const uint32_t hak_class_size[HAK_NUM_CLASSES] = {
    8,    16,   32,   48,   64,   80,    96,    112,   128,   160,   192,   224,   256,   320,
    384,  448,  512,  640,  768,  896,   1024,  1280,  1536,  1792,  2048,  2560,  3072,  3584,
    4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
};

/* Class for each 8-byte step up to 1 KiB, indexed by (size + 7) >> 3.
 * The second table is the same per byte, indexed by size + 7 (the 7 folds
 * into the load's displacement), and holds the class as its bin's byte
 * offset in the thread's bins: malloc's fast path needs neither a shift
 * nor a scale. 2 KiB, of which a program touches the lines of the sizes
 * it uses. */
#define L8(M, c) M(c)
#define L16(M, c) M(c), M(c)
#define L32(M, c) M(c), M(c), M(c), M(c)
#define L64(M, c) L32(M, c), L32(M, c)
#define L128(M, c) L64(M, c), L64(M, c)
#define CLASS_LUT(M)                                                                                                \
    L8(M, 0), L8(M, 0), L8(M, 1), L16(M, 2), L16(M, 3), L16(M, 4), L16(M, 5), L16(M, 6), L16(M, 7), L16(M, 8),      \
        L32(M, 9), L32(M, 10), L32(M, 11), L32(M, 12), L64(M, 13), L64(M, 14), L64(M, 15), L64(M, 16), L128(M, 17), \
        L128(M, 18), L128(M, 19), L128(M, 20)
#define AS_CLASS(c) c
#define AS_BIN_OFFSET(c) BIN8((c) * sizeof(struct hak_tc_bin))
#define BIN8(o) o, o, o, o, o, o, o, o
const uint8_t hak_small_class_lut[(HAK_TINY_MAX >> 3) + 1] = {CLASS_LUT(AS_CLASS)};
const uint16_t hak_small_bin_lut[HAK_TINY_MAX + 8] = {CLASS_LUT(AS_BIN_OFFSET)};
#undef L8
#undef L16
#undef L32
#undef L64
#undef L128
#undef CLASS_LUT
#undef AS_CLASS
#undef AS_BIN_OFFSET
#undef BIN8

#define M2(c) c, c
#define M4(c) c, c, c, c
#define M8(c) M4(c), M4(c)
#define M16(c) M8(c), M8(c)
/* (size - 1) >> 8 for 1025 .. 32768 is 4 .. 127: 0..3 are never read. */
const uint8_t hak_mid_class_lut[HAK_SMALL_MAX >> 8] = {
    M4(0),  21,     22,     23,     24,     M2(25), M2(26),  M2(27),  M2(28),  M4(29),  M4(30),
    M4(31), M4(32), M8(33), M8(34), M8(35), M8(36), M16(37), M16(38), M16(39), M16(40),
};
#undef M2
#undef M4
#undef M8
#undef M16

HAK_TLS struct hak_tls hak_tls = {.heap = HAK_NO_HEAP};

/* First class above the Tiny tier: where Tiny falls back to. */
#define FIRST_MID_CLASS HAK_NUM_TINY_CLASSES

enum tc_state { TC_NEW = 0, TC_ACTIVE = 1, TC_EXITED = 2 };
static HAK_TLS uint8_t tc_state;
/* Atomic (relaxed loads and stores, plain moves) because the decay
 * thread reads it: see busy_enter and hak_small_reclaim_idle. */
static HAK_TLS _Atomic uint8_t tc_busy;
/* The busy flag of a heap whose thread is gone without handing it back (a
 * fork child's copy of a thread caught mid slow path, a thread that exited
 * inside one): the decay thread must never take such a heap for idle, and
 * the dead thread's TLS may be reused or unmapped. */
static _Atomic uint8_t forever_busy = 1;

/* The front that serves a class (HAKMEM_TINY_TLS_SLL, _QUICK, _FASTCACHE).
 * Only FRONT_SLL is inlined into malloc and free; the others are A/B
 * options served from the slow path (see the measurements in README). */
enum front { FRONT_SLL = 0, FRONT_MAG = 1, FRONT_QUICK = 2, FRONT_DIRECT = 3 };

#define QUICK_SLOTS 6
/* TinyQuickSlot: six blocks and their count in one cache line. */
struct quick_slot {
    uint32_t count;
    void *item[QUICK_SLOTS];
} __attribute__((aligned(64)));

struct class_state {
    struct slab_list avail; /* owned slabs with a local block; head = current */
    struct slab_list full;  /* owned slabs with none */
    uint32_t empty;         /* owned slabs with no block out */
    uint32_t mag_count;
    void **mag;
    uint32_t misses;            /* SLL misses, for HAKMEM_TINY_REMOTE_DRAIN_TRYRATE */
    uint64_t last_epoch;        /* heap->epoch at this class's last slow-path allocation */
    uint32_t spills_since_miss; /* magazine spills to the slabs since the last SLL miss */
    uint8_t draining;           /* frees bypass the SLL until the next miss (see DRAIN_SPILLS) */
    int64_t scav_net;           /* bytes freed into its slabs less bytes taken, since its last scavenge */
    uint8_t drain_pending;
};

struct hak_heap {
    struct class_state cls[HAK_NUM_CLASSES];
    /* Raised by another thread's free (see remote_free). */
    _Atomic uint32_t remote_pending[HAK_NUM_CLASSES];
    struct quick_slot quick[HAK_NUM_CLASSES];
    uint64_t refilled; /* blocks since the last abandoned-slab sweep */
    uint64_t epoch;    /* slow-path allocations of the thread, all classes */
    /* The thread's bins (its TLS), and the list of heaps in use: a child of
     * fork() hands back the caches of the threads it did not inherit. */
    struct hak_tc_bin *bins;
    _Atomic uint8_t *busy;     /* the thread's tc_busy */
    struct hak_idle_gate gate; /* passed by busy_enter (hak_small_reclaim_idle) */
    struct hak_heap *live_next, *live_prev;
    struct hak_heap *next_free;
    long tid;
    uint32_t diet_seen; /* diet_level its caches were last cut to */
    bool sampling;      /* sampled-allocation mode (see set_sampling) */
    /* Blocks the decay thread cut from each Mid SLL (cut_mid_sll) while
     * the thread was idle: its bins' rooms are the thread's alone, so the
     * thread adds these itself as it next enters the slow paths. */
    bool sll_cut_pending;
    uint32_t sll_cut[HAK_NUM_CLASSES];
};

struct central {
    pthread_mutex_t lock;
    struct slab_list abandoned; /* slabs of exited threads */
    /* Length of `abandoned`, written under the lock, read without it to
     * skip an empty list without taking the lock. */
    _Atomic uint32_t abandoned_count;
} __attribute__((aligned(64)));

static struct central centrals[HAK_NUM_CLASSES];

static bool busy_now(void)
{
    return atomic_load_explicit(&tc_busy, memory_order_relaxed) != 0;
}

static void busy_leave(void)
{
    hak_gate_leave(&tc_busy);
}

/* Entering the slow paths, which edit the thread's magazines and slabs,
 * through the heap's idle gate: the decay thread may be handing them back
 * (hak_small_reclaim_idle). */
static void busy_enter(void)
{
    struct hak_heap *heap = hak_my_heap;
    if (heap == HAK_NO_HEAP) {
        atomic_store_explicit(&tc_busy, 1, memory_order_relaxed);
        return;
    }
    hak_gate_enter(&tc_busy, &heap->gate);
    if (HAK_UNLIKELY(heap->sll_cut_pending)) {
        heap->sll_cut_pending = false;
        for (unsigned c = FIRST_MID_CLASS; c < HAK_NUM_CLASSES; c++) {
            hak_tc_bins[c].room += (int32_t)heap->sll_cut[c];
            heap->sll_cut[c] = 0;
        }
    }
}

/* Called with central->lock held. */
static void abandoned_count_add(struct central *central, int delta)
{
    uint32_t n = atomic_load_explicit(&central->abandoned_count, memory_order_relaxed);
    atomic_store_explicit(&central->abandoned_count, n + (uint32_t)delta, memory_order_relaxed);
}

/* Heaps are recycled, never unmapped: another thread may still write a
 * remote_pending flag into the heap of a thread that has just exited. */
static pthread_mutex_t heap_lock = PTHREAD_MUTEX_INITIALIZER;
/* This thread holds heap_lock (heap_get, heap_put): an exit from inside
 * one of them (pthread_exit in a signal handler) must not wait for it. */
static HAK_TLS bool holds_heap_lock;

static void heap_lock_take(void)
{
    pthread_mutex_lock(&heap_lock);
    holds_heap_lock = true;
}

static void heap_lock_drop(void)
{
    holds_heap_lock = false;
    pthread_mutex_unlock(&heap_lock);
}
static struct hak_heap *free_heaps;
static struct hak_heap *live_heaps;
static size_t heap_bytes;

/* Per-class parameters, fixed at initialisation from the configuration;
 * the magazine cap and SLL limit are cut while the RSS budget's diet is
 * on (class_*_base keep the configured values, class_floor the floor of
 * HAKMEM_TINY_CAP_FLOOR_C0..C7). */
static uint32_t class_mag_cap[HAK_NUM_CLASSES];
static uint32_t class_sll_limit[HAK_NUM_CLASSES];
static uint32_t class_mag_base[HAK_NUM_CLASSES];
static uint32_t class_sll_base[HAK_NUM_CLASSES];
static uint32_t class_floor[HAK_NUM_CLASSES];
static uint32_t class_refill_base[HAK_NUM_CLASSES];
static _Atomic uint32_t diet_level;
static uint32_t class_refill[HAK_NUM_CLASSES];
static uint8_t class_front[HAK_NUM_CLASSES];
/* Distance between a class's blocks in a slab: its size, plus a cache line
 * for the Mid classes where that still fits as many blocks per slab.
 * Blocks of a multiple of 4 KiB would otherwise all start at the same
 * offset in a page, so their first lines (headers, the bytes a program
 * reads first) compete for 1/64 of the sets of every cache level: bench
 * mixed_mid (cachegrind, scale 0.1) made 754 000 last-level misses this
 * way, 351 000 with the padding (tcmalloc 647 000), and ran 5-8 % faster
 * (medians of 7 and 11 interleaved runs).
 * Padded: 5, 6, 7, 10, 12, 14, 20, 24 and 28 KiB. The others would lose a
 * block per slab: 4, 8, 16 and 32 KiB divide it exactly (a padded 32 KiB
 * block would need a slab to itself), and the classes under 4 KiB start
 * at 16 or more different page offsets already. */
static uint32_t class_stride[HAK_NUM_CLASSES];
/* Reason a Tiny class is routed to the next tier, or -1. */
static int8_t class_route_away[HAK_NUM_CLASSES];
static bool ring_enabled; /* HAKMEM_POOL_TLS_RING */
static uint32_t remote_threshold;
static uint32_t remote_tryrate;
static uint64_t sweep_interval;
static bool adopt_partial;

/* Empty slabs a thread keeps per class (not purged) so that a live set
 * oscillating around a slab boundary does not madvise on every swing;
 * 0 with HAKMEM_TINY_MEM_DIET=1. */
static uint32_t empty_keep = 1;
/* A class with cached blocks that has not been to the slow path while the
 * thread made IDLE_EPOCHS slow-path allocations of other classes hands its
 * whole cache back (probe tiny_spill, target 2). Its cached blocks are
 * scattered over its slabs and would otherwise pin them all: bench
 * tiny_bands (scale 0.3), whose working set moves from band to band,
 * peaked at 9.4 MB without this, 7.0 MB with 256/64 and 5.7 MB with
 * 128/32 (glibc 5.2, mimalloc 5.8). Checked every IDLE_CHECK slow-path
 * allocations. */
#define IDLE_EPOCHS 128
/* A class whose magazine spills to the slabs DRAIN_SPILLS times with no
 * SLL miss in between is only being freed (a live set shrinking): its
 * whole cache goes back and its frees go straight to their slabs until
 * its next miss. Cached blocks scattered over slabs would otherwise keep
 * them all resident: bench phases, after freeing 99 % of 64 MiB of small
 * and 32 MiB of 2-64 KiB blocks, held 21.4 MB without this, 11.0 MB with
 * 4 spills (glibc 3.6, jemalloc 102, mimalloc 110). 2 spills gave 9.9 MB
 * but cost mixed_mid 20 % (random replacement spills twice in a row now
 * and then); 4 costs nothing measurable. */
#define DRAIN_SPILLS 4
#define IDLE_CHECK 32
/* Full slabs looked at per scan for remote frees: bounds the scan when a
 * thread owns many full slabs. */
#define FULL_SCAN_MAX 64
#define MID_REFILL_BYTES (16 * HAK_KiB)

/* Magazine capacity when HAKMEM_TINY_MAG_CAP* is unset. bench/tiny_hot
 * and tiny_bands: 128 blocks up to 64 B (the SLL holds twice that) and
 * 16 KiB of blocks per larger Tiny class keep refills under 1 % of calls;
 * the 1-32 KiB classes hold 128 KiB per class (bench/mixed_mid: at 64 KiB
 * a refill or spill came every ten operations). */
static uint32_t default_mag_cap(unsigned class_index)
{
    uint32_t size = hak_class_size[class_index];
    uint32_t cap;
    if (class_index >= HAK_NUM_TINY_CLASSES)
        cap = (uint32_t)(128 * HAK_KiB / size);
    else if (size <= 64)
        cap = 128;
    else
        cap = (uint32_t)(16 * HAK_KiB / size);
    return cap < 16 ? 16 : cap;
}

static void configure_classes(void)
{
    long long profile = hak_cfg_int(HAK_CFG_TINY_PROFILE);
    bool tiny_enabled = hak_cfg_int(HAK_CFG_WRAP_TINY) && hak_cfg_int(HAK_CFG_TINY_USE_SUPERSLAB);
    uint32_t keep_factor = hak_cfg_int(HAK_CFG_FREE_POLICY) == HAK_FREE_KEEP ? 4 : 1;
    uint32_t multiplier = (uint32_t)hak_cfg_int(HAK_CFG_SLL_MULTIPLIER);
    bool sll = hak_cfg_int(HAK_CFG_TINY_TLS_SLL);
    bool quick = hak_cfg_int(HAK_CFG_TINY_QUICK);
    bool direct = hak_cfg_int(HAK_CFG_TINY_FASTCACHE) || hak_cfg_int(HAK_CFG_TINY_FRONTEND);
    size_t wmax_mid = (size_t)hak_cfg_int(HAK_CFG_WMAX_MID);
    uint32_t min_bundle = (uint32_t)hak_cfg_int(HAK_CFG_POOL_MIN_BUNDLE);
    bool pool_tls_free = hak_cfg_int(HAK_CFG_POOL_TLS_FREE);
    bool mid_enabled = !hak_cfg_is_set(HAK_CFG_CAP_MID) || hak_cfg_int(HAK_CFG_CAP_MID) != 0;
    ring_enabled = hak_cfg_int(HAK_CFG_POOL_TLS_RING) != 0;
    bool mem_diet = hak_cfg_int(HAK_CFG_TINY_MEM_DIET);

    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        pthread_mutex_init(&centrals[c].lock, NULL);
        uint32_t size = hak_class_size[c];
        bool pad = c >= HAK_NUM_TINY_CLASSES && HAK_SLAB_SIZE / (size + 64) == HAK_SLAB_SIZE / size;
        class_stride[c] = pad ? size + 64 : size;
        uint32_t mag = default_mag_cap(c);
        uint32_t sll_cap = mag;
        uint32_t refill;
        uint8_t front = FRONT_SLL;
        class_route_away[c] = -1;
        if (c < HAK_NUM_TINY_CLASSES) {
            unsigned band = hak_class_band(c);
            bool hot = band <= 3;
            if (hak_cfg_is_set(HAK_CFG_TINY_MAG_CAP_C0 + band))
                mag = (uint32_t)hak_cfg_int(HAK_CFG_TINY_MAG_CAP_C0 + band);
            else if (hak_cfg_is_set(HAK_CFG_TINY_MAG_CAP))
                mag = (uint32_t)hak_cfg_int(HAK_CFG_TINY_MAG_CAP);
            sll_cap = hot ? mag * multiplier : mag;
            refill = (uint32_t)hak_cfg_int(hot ? HAK_CFG_TINY_REFILL_MAX_HOT : HAK_CFG_TINY_REFILL_MAX);
            if (hot && hak_cfg_is_set(HAK_CFG_TINY_REFILL_MAX_HOT_C0 + band))
                refill = (uint32_t)hak_cfg_int(HAK_CFG_TINY_REFILL_MAX_HOT_C0 + band);
            else if (hak_cfg_is_set(HAK_CFG_TINY_REFILL_MAX_C0 + band))
                refill = (uint32_t)hak_cfg_int(HAK_CFG_TINY_REFILL_MAX_C0 + band);

            if (!tiny_enabled)
                class_route_away[c] = HAK_FALLBACK_DISABLED;
            else if (profile == HAK_PROFILE_OFF || (profile == HAK_PROFILE_HOT && band == 7))
                class_route_away[c] = HAK_FALLBACK_ROUTING;
            if (direct)
                front = FRONT_DIRECT;
            else if (quick && hak_class_size[c] <= 64)
                front = FRONT_QUICK;
            else if (!sll)
                front = FRONT_MAG;
        } else {
            /* A refill links its blocks through their first word, so it
             * faults in every page it hands out: at most MID_REFILL_BYTES,
             * or a program that makes one 4 KiB allocation gets 64 KiB
             * resident (measured: a one-malloc program's first SuperSlab
             * held 108 KiB). */
            refill = MID_REFILL_BYTES / hak_class_size[c];
            /* The Mid pool's working set: a class's magazine holds at
             * most HAKMEM_WMAX_MID bytes, and its SLL as many blocks.
             * Halving that (SLL and magazine together under WMAX) cost
             * bench mixed_mid 10 % more instructions (callgrind, scale
             * 0.05: 75.7 M against 68.9 M): 32 KiB blocks then spill every
             * fourth free. */
            uint32_t wmax_blocks = (uint32_t)(wmax_mid / hak_class_size[c]);
            if (wmax_blocks < 2)
                wmax_blocks = 2;
            if (mag > wmax_blocks)
                mag = sll_cap = wmax_blocks;
            if (refill > sll_cap / 2)
                refill = sll_cap / 2;
            if (refill < min_bundle)
                refill = min_bundle;
            if (!mid_enabled)
                class_route_away[c] = HAK_FALLBACK_DISABLED;
            if (!pool_tls_free)
                front = FRONT_DIRECT;
        }
        if (refill > sll_cap)
            refill = sll_cap;
        if (refill > mag)
            refill = mag;
        /* HAKMEM_TINY_MEM_DIET=1: half the caches (and no empty slab
         * kept, pages purged at release: below and in superslab.c). */
        if (mem_diet) {
            mag = mag / 2 ? mag / 2 : 1;
            sll_cap = sll_cap / 2 ? sll_cap / 2 : 1;
            refill = refill / 2 ? refill / 2 : 1;
        }
        class_mag_cap[c] = class_mag_base[c] = mag;
        class_refill[c] = class_refill_base[c] = refill ? refill : 1;
        class_front[c] = front;
        class_sll_limit[c] = front == FRONT_SLL && class_route_away[c] < 0
                                 ? sll_cap * keep_factor + (uint32_t)hak_cfg_int(HAK_CFG_TINY_SPILL_HYST)
                                 : 0;
        class_sll_base[c] = class_sll_limit[c];
        unsigned band = c < HAK_NUM_TINY_CLASSES ? hak_class_band(c) : 7;
        long long floor =
            hak_cfg_is_set(HAK_CFG_TINY_CAP_FLOOR_C0 + band) ? hak_cfg_int(HAK_CFG_TINY_CAP_FLOOR_C0 + band) : 1;
        class_floor[c] = floor < 1 ? 1 : (uint32_t)floor;
    }
    remote_threshold = (uint32_t)hak_cfg_int(HAK_CFG_TINY_REMOTE_DRAIN_THRESHOLD);
    remote_tryrate = (uint32_t)hak_cfg_int(HAK_CFG_TINY_REMOTE_DRAIN_TRYRATE);
    sweep_interval = (uint64_t)hak_cfg_int(HAK_CFG_TINY_SS_PARTIAL_INTERVAL);
    adopt_partial = hak_cfg_int(HAK_CFG_TINY_SS_PARTIAL);
    empty_keep = hak_cfg_int(HAK_CFG_TINY_MEM_DIET) ? 0 : 1;

    size_t bytes = sizeof(struct hak_heap);
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        bytes += (size_t)class_mag_base[c] * sizeof(void *);
    heap_bytes = hak_align_up(bytes, HAK_PAGE);
}

void hak_small_init(void)
{
    configure_classes();
    hak_ss_init();
}

static struct slab_list *owned_list(struct class_state *cs, struct hak_slab *slab)
{
    return slab->list == HAK_SLAB_FULL ? &cs->full : &cs->avail;
}

static bool slab_has_local(const struct hak_slab *slab)
{
    return slab->free_list || slab->scav_mask || slab->bump < slab->end;
}

/* ---- scavenging: free pages inside slabs still in use ----
 *
 * A slab goes back to its SuperSlab only once every block is free, and a
 * single live block keeps all its pages. After a program frees most of
 * its blocks (bench phases: 90 % at random), most pages of its slabs hold
 * only free blocks. Scavenging purges those pages: their free blocks leave
 * the slab's free list (the link in a purged page would read as zero) and
 * the page's bit in scav_mask says so; slabs_take reclaims a page, putting
 * its blocks back, only when the slab has no other free block. Invariant:
 * a block touching a scavenged page is free and on no list, so used and
 * the free list never count it.
 *
 * When: a class's slabs have taken back SCAV_CLASS_MIN bytes more than
 * its refills took out of them since its last scavenge (the class is
 * shrinking); then each of its slabs freed into since is looked at once.
 * A class in steady churn refills what it spills and never gets there:
 * a trigger on the thread's freed bytes alone (the SuperSlab tier's
 * allowance then, 1 MiB + 1/8 of the slab memory) scavenged 123 MiB in bench
 * mixed_mid (scale 0.3) that its refills faulted back at once, 0.11 ->
 * 0.175 s. malloc_trim scavenges every class at once.
 *
 * Tiny classes (<= 1 KiB) trigger after 128 KiB: a Tiny page is wholly
 * free only when all of its 4 to 512 blocks are, which steady churn does
 * not produce, so a lower trigger finds nothing to refault there; a class
 * that is dying out does produce them, and may hold less than 1 MiB in
 * all. bench frag_stress (small blocks giving way to 1-32 KiB ones): peak
 * RSS 70.8 -> 65.3 MB, with 64 KiB no lower; tiny_bands' instruction
 * count moved 0.1 % (callgrind). Mid classes stay at 1 MiB: a free Mid
 * block of 4 KiB or more frees whole pages by itself, and mixed_mid
 * refaulted what a lower trigger scavenged. */
#define SLAB_PAGES (HAK_SLAB_SIZE / HAK_PAGE)
_Static_assert(SLAB_PAGES <= 16, "scav_mask has one bit per page of a slab");
#define SLAB_MAX_BLOCKS (HAK_SLAB_SIZE / 8)

#define SCAV_CLASS_MIN HAK_MiB
#define SCAV_TINY_CLASS_MIN (128 * HAK_KiB)

/* The pages of the slab block `index` of `size` bytes touches, as a mask. */
static uint32_t block_pages(uint32_t index, uint32_t size)
{
    uint32_t first = (uint32_t)((size_t)index * size / HAK_PAGE);
    uint32_t last = (uint32_t)(((size_t)index + 1) * size - 1) / (uint32_t)HAK_PAGE;
    return (2u << last) - (1u << first);
}

static void slab_note_freed(struct hak_slab *slab, uint32_t blocks)
{
    uint32_t freed = slab->scav_freed + blocks;
    slab->scav_freed = (uint16_t)(freed > UINT16_MAX ? UINT16_MAX : freed);
}

/* Free blocks at random places leave a page of k blocks wholly free with
 * probability f^k (f the free share): skip the walk of a slab where not
 * even one such page is to be expected, such as 16-byte blocks half free. */
static bool scavenge_worthwhile(const struct hak_slab *slab, uint32_t carved, uint32_t pages)
{
    uint32_t free_blocks = carved - slab->used;
    if ((size_t)free_blocks * slab->block_size < HAK_PAGE)
        return false;
    double f = (double)free_blocks / carved, p = 1.0;
    for (uint32_t k = (uint32_t)(HAK_PAGE / slab->block_size); k; k >>= 1, f *= f)
        if (k & 1)
            p *= f;
    return p * (pages - (uint32_t)__builtin_popcount(slab->scav_mask)) >= 1.0;
}

/* Owner only. Returns the bytes purged. `thorough` walks the free list of
 * a slab at least half free even where scavenge_worthwhile expects no free
 * page: frees are rarely at random places once a program stops, since
 * what dies together was mostly allocated together. bench phases after
 * 1.5 s idle: its 16- and 32-byte slabs kept all 16 pages resident for 47
 * and 53 survivors packed in their first two, because 4049 free blocks of
 * 4096 at random would leave a page wholly free with probability 0.05
 * (idle RSS 0.81 -> 0.70 MB above the process's before its first
 * allocation, for survivors that touch 0.5 MB of pages). */
static size_t slab_scavenge(struct hak_slab *slab, bool thorough)
{
    char *base = hak_slab_base(slab);
    uint32_t size = slab->block_size;
    uint32_t carved = (uint32_t)((size_t)(slab->bump - base) / size);
    uint32_t pages = hak_slab_carved_pages(slab);
    slab->scav_freed = 0;
    bool half_free = carved - slab->used >= slab->used;
    if (!slab->free_list || (size_t)(carved - slab->used) * size < HAK_PAGE ||
        (!(thorough && half_free) && !scavenge_worthwhile(slab, carved, pages)))
        return 0;
    uint64_t on_list[SLAB_MAX_BLOCKS / 64];
    memset(on_list, 0, (carved + 63) / 64 * sizeof on_list[0]);
    for (char *b = slab->free_list; b; b = *(char **)b) {
        uint32_t i = (uint32_t)((size_t)(b - base) / size);
        on_list[i / 64] |= 1ull << (i % 64);
    }
    uint32_t busy = 0;
    for (uint32_t i = 0; i < carved; i++) {
        if (on_list[i / 64] >> (i % 64) & 1)
            continue;
        uint32_t touches = block_pages(i, size);
        if (!(touches & slab->scav_mask))
            busy |= touches;
    }
    uint32_t purge = ((1u << pages) - 1) & ~busy & ~(uint32_t)slab->scav_mask;
    if (!purge)
        return 0;
    for (char **link = (char **)&slab->free_list; *link;) {
        char *b = *link;
        if (block_pages((uint32_t)((size_t)(b - base) / size), size) & purge)
            *link = *(char **)b;
        else
            link = (char **)b;
    }
    for (uint32_t i = 0; i < pages;) {
        if (!(purge & (1u << i))) {
            i++;
            continue;
        }
        uint32_t j = i;
        while (j < pages && (purge & (1u << j)))
            j++;
        hak_os_purge(base + (size_t)i * HAK_PAGE, (size_t)(j - i) * HAK_PAGE, HAK_PT_TINY);
        i = j;
    }
    uint32_t count = (uint32_t)__builtin_popcount(purge);
    slab->scav_mask = (uint16_t)(slab->scav_mask | purge);
    slab->purged_pages = (uint16_t)(slab->purged_pages + count);
    size_t bytes = (size_t)count * HAK_PAGE;
    HAK_COUNT(scavenged_bytes, bytes);
    HAK_PROBE(ss_slab_scavenge, slab->class_index, bytes, base);
    return bytes;
}

/* Put the blocks of the slab's lowest scavenged page back on its free
 * list: those whose other pages are not scavenged (a block straddling two
 * scavenged pages comes back with the second). The bump pointer has not
 * moved since: slabs_take carves only once no page is scavenged. */
static void slab_reclaim_page(struct class_state *cs, struct hak_slab *slab)
{
    char *base = hak_slab_base(slab);
    uint32_t size = slab->block_size;
    uint32_t page = (uint32_t)__builtin_ctz(slab->scav_mask);
    uint32_t carved = (uint32_t)((size_t)(slab->bump - base) / size);
    slab->scav_mask = (uint16_t)(slab->scav_mask & ~(1u << page));
    slab->purged_pages--;
    hak_os_unpurge(base + (size_t)page * HAK_PAGE, HAK_PAGE, HAK_PT_TINY);
    cs->scav_net += (int64_t)HAK_PAGE;
    uint32_t first = (uint32_t)((size_t)page * HAK_PAGE / size);
    uint32_t last = (uint32_t)(((size_t)page + 1) * HAK_PAGE - 1) / size;
    if (last >= carved)
        last = carved - 1;
    for (uint32_t i = last + 1; i-- > first;) {
        if (block_pages(i, size) & slab->scav_mask)
            continue;
        char *b = base + (size_t)i * size;
        *(void **)b = slab->free_list;
        slab->free_list = b;
    }
}

/* `thorough` (the idle pass, malloc_trim): every slab with a free block,
 * those at least half free walked whatever their odds; otherwise only the
 * slabs freed into since they were last looked at. */
static void scavenge_class(struct class_state *cs, bool thorough)
{
    cs->scav_net = 0;
    for (struct hak_slab *slab = cs->avail.head; slab; slab = slab->next)
        if (slab->scav_freed || thorough)
            slab_scavenge(slab, thorough);
}

/* The idle pass and malloc_trim: every slab's pages past what its class
 * carved (an earlier class's, or not reached yet) too. Left to those two
 * because a class in use carves them again soon: bench frag_stress after
 * 1.5 s idle, 44.0 -> 42.6 MB (1.5 MiB of such pages in 310 slabs). */
static void scavenge_class_all(struct class_state *cs)
{
    scavenge_class(cs, true);
    for (struct hak_slab *slab = cs->avail.head; slab; slab = slab->next)
        hak_ss_slab_purge_tail(slab);
    for (struct hak_slab *slab = cs->full.head; slab; slab = slab->next)
        hak_ss_slab_purge_tail(slab);
}

static void maybe_scavenge(struct class_state *cs, unsigned class_index)
{
    int64_t trigger = class_index < HAK_NUM_TINY_CLASSES ? (int64_t)SCAV_TINY_CLASS_MIN : (int64_t)SCAV_CLASS_MIN;
    if (HAK_UNLIKELY(cs->scav_net > trigger))
        scavenge_class(cs, false);
}

/* Sparse slabs. Frees at random leave every slab of a class a little
 * emptier, and the thread caches hand the freed blocks straight out again,
 * so new blocks land wherever old ones died: a class that shrinks keeps
 * its survivors, old and new, spread over all its slabs, and few pages
 * ever come free. bench frag_stress, as its small blocks give way to
 * 1-32 KiB ones: at 33 % of the run the 590 Tiny slabs were all 10-30 %
 * used, holding 8 MiB in 37 MiB. So a slab found less than half used when
 * a block comes back to it from the caches becomes sparse, if the slab at
 * the front of the class's list (where refills take from) is fuller and
 * not sparse itself: it goes to the back, and its bin offset points at
 * hak_tls.sparse_bin, so that its blocks freed from then on go back to it
 * rather than to the caches. A refill that reaches it ends the state.
 * Survivors gather in the fuller slabs; the sparse ones empty and go
 * back, or their pages are scavenged. frag_stress peak RSS 65.3 -> 60.3
 * MiB (glibc 60.9), with the SuperSlab allowance at 1/16 (superslab.c);
 * callgrind counts 0.5-1.4 % more instructions on tiny_bands, mixed_small
 * and larson, and the same on tiny_hot. */

/* The offset from the thread pointer of hak_tls's field at `offset`. The
 * barrier keeps the TLS offset a 64-bit GOT load: the linker can relax
 * only that form when libhakmem.a goes into an executable. */
static int32_t tls_field_tpoff(size_t offset)
{
    intptr_t tpoff = hak_tls_tpoff();
    __asm__("" : "+r"(tpoff));
    return (int32_t)(tpoff + (intptr_t)offset);
}

/* bin_tpoff: relaxed atomic, because the decay thread's idle reclaim
 * gives blocks back (and may make a slab sparse) while the owner's free
 * fast path reads it; either value is safe there (plain moves on x86). */
static int32_t slab_bin(const struct hak_slab *slab)
{
    return __atomic_load_n(&slab->bin_tpoff, __ATOMIC_RELAXED);
}

static int32_t sparse_tpoff(void)
{
    return tls_field_tpoff(offsetof(struct hak_tls, sparse_bin));
}

static bool slab_sparse(const struct hak_slab *slab)
{
    return slab_bin(slab) == sparse_tpoff();
}

static void slab_set_bin(struct hak_slab *slab, unsigned class_index)
{
    __atomic_store_n(&slab->bin_tpoff,
                     tls_field_tpoff(offsetof(struct hak_tls, bins) + class_index * sizeof(struct hak_tc_bin)),
                     __ATOMIC_RELAXED);
}

/* A Mid class's slabs become sparse only while the class shrinks (its
 * slabs took back SPARSE_MID_SHRINK more than its refills took out): in
 * steady churn, bench mixed_mid's slabs hover around half used, and
 * sparse ones cost it 4-8 % (their blocks no longer reused, still hot,
 * from the caches). With the gate, frag_stress's peak stays under glibc's
 * (60.3-60.5 against 60.9 MiB, 5-7 runs each); without Mid classes at
 * all it was 62.8 MiB. */
#define SPARSE_MID_SHRINK (256 * HAK_KiB)

/* A block just went back to `slab`, on its class's avail list. The slab a
 * refill last took from may turn sparse again at once: exempting it raised
 * frag_stress's peak by 0.6 MiB. */
static void maybe_set_sparse(struct class_state *cs, struct hak_slab *slab)
{
    struct hak_slab *front = cs->avail.head;
    if (slab->used * 2 >= (uint32_t)(HAK_SLAB_SIZE / slab->block_size) || front == slab || front->used <= slab->used ||
        slab_sparse(front) || slab_sparse(slab) ||
        (slab->class_index >= HAK_NUM_TINY_CLASSES && cs->scav_net <= (int64_t)SPARSE_MID_SHRINK))
        return;
    __atomic_store_n(&slab->bin_tpoff, sparse_tpoff(), __ATOMIC_RELAXED);
    HAK_PROBE(ss_slab_sparse, slab->class_index, hak_slab_base(slab), slab->used);
    if (cs->avail.tail != slab) {
        slab_remove(&cs->avail, slab);
        slab_append(&cs->avail, slab, HAK_SLAB_AVAIL);
    }
}

static void slab_set_owner(struct hak_slab *slab, struct hak_heap *heap)
{
    atomic_store_explicit(&slab->owner, heap, memory_order_release);
    atomic_store_explicit(&slab->owner_tp, heap ? (uintptr_t)__builtin_thread_pointer() : 0, memory_order_release);
}

/* Tiny classes report refills and spills with tiny_*, Mid classes with
 * pool_* (tier 2, class counted from the first Mid class). */
static void probe_refill(unsigned class_index, uint32_t count, int source)
{
    hak_hist(class_index < HAK_NUM_TINY_CLASSES ? HAK_PT_TINY : HAK_PT_MID, hak_class_size[class_index], count);
    if (class_index < HAK_NUM_TINY_CLASSES) {
        HAK_COUNT(tiny_refills, 1);
        HAK_PROBE(tiny_refill, class_index, count, source);
    } else {
        HAK_COUNT(mid_refills, 1);
        HAK_PROBE(pool_refill, HAK_PT_MID, class_index - HAK_NUM_TINY_CLASSES, count, source);
    }
}

static void probe_spill(unsigned class_index, uint32_t count, int target)
{
    if (class_index < HAK_NUM_TINY_CLASSES) {
        if (target == HAK_SPILL_SLABS)
            HAK_COUNT(tiny_spills, 1);
        HAK_PROBE(tiny_spill, class_index, count, target);
    } else {
        if (target == HAK_SPILL_SLABS)
            HAK_COUNT(mid_spills, 1);
        HAK_PROBE(pool_spill, HAK_PT_MID, class_index - HAK_NUM_TINY_CLASSES, count, target);
    }
}

/* ---- remote free ---- */

/* A free by a thread that does not own the slab: `n` blocks of one slab,
 * linked from head to tail, pushed with one CAS on the slab's own cache
 * line; the owner learns of it through remote_pending, raised
 * by the free that makes the list non-empty (the owner then finds the
 * slab even on its full list) and by the one that brings the list to
 * HAKMEM_TINY_REMOTE_DRAIN_THRESHOLD blocks. */
static void remote_free_chain(struct hak_slab *slab, void *head, void *tail, uint32_t n, unsigned class_index)
{
    void *old = atomic_load_explicit(&slab->remote_head, memory_order_relaxed);
    do {
        *(void **)tail = old;
    } while (!atomic_compare_exchange_weak_explicit(&slab->remote_head, &old, head, memory_order_release,
                                                    memory_order_relaxed));
    /* A plain load and store, not an atomic add: the count only paces
     * draining, so a lost increment between two racing freers costs
     * nothing, and a second locked instruction per remote free would. */
    uint32_t before = atomic_load_explicit(&slab->remote_count, memory_order_relaxed);
    uint32_t queued = before + n;
    atomic_store_explicit(&slab->remote_count, queued, memory_order_relaxed);
    struct hak_heap *owner = atomic_load_explicit(&slab->owner, memory_order_acquire);
    if (owner && (old == NULL || (before < remote_threshold && queued >= remote_threshold)))
        atomic_store_explicit(&owner->remote_pending[class_index], 1, memory_order_release);
    HAK_PROBE(tiny_remote_free, class_index, head, owner ? owner->tid : 0);
}

static void remote_free(struct hak_slab *slab, void *p, unsigned class_index)
{
    remote_free_chain(slab, p, p, 1, class_index);
}

/* HAKMEM_POOL_TLS_RING: a thread's frees of other threads' Mid blocks
 * (1-32 KiB) wait in a ring and go back per slab, one CAS for all of a
 * slab's blocks, when the ring is full, at the thread's next slow-path
 * allocation, at its exit and at malloc_trim. At most RING_SLOTS blocks
 * wait per thread. */
#define RING_SLOTS 32
struct remote_ring {
    uint32_t count;
    void *block[RING_SLOTS];
};
static HAK_TLS struct remote_ring ring;

static void slab_give(struct class_state *cs, void *block);

static void ring_flush(void)
{
    struct remote_ring *r = &ring;
    uint32_t blocks = r->count, slabs = 0;
    if (!blocks)
        return;
    for (uint32_t i = 0; i < r->count; i++) {
        void *head = r->block[i];
        if (!head)
            continue;
        struct hak_slab *slab = hak_slab_of(head);
        void *tail = head;
        uint32_t n = 1;
        for (uint32_t j = i + 1; j < r->count; j++) {
            if (r->block[j] && hak_slab_of(r->block[j]) == slab) {
                *(void **)tail = r->block[j];
                tail = r->block[j];
                r->block[j] = NULL;
                n++;
            }
        }
        /* The slab may have become this thread's since the free (adopted
         * from an exited owner): then the blocks are the owner's to give
         * back. On its remote list they would wait for a drain, which
         * comes only when this thread allocates (a thread that only frees
         * kept such slabs full: 104 MiB after tests/c/threads_fork.c
         * thread_churn). */
        if (atomic_load_explicit(&slab->owner_tp, memory_order_relaxed) == (uintptr_t)__builtin_thread_pointer() &&
            tc_state == TC_ACTIVE) {
            struct class_state *cs = &hak_my_heap->cls[slab->class_index];
            for (void *b = head, *next; n--; b = next) {
                next = *(void **)b;
                slab_give(cs, b);
            }
        } else {
            remote_free_chain(slab, head, tail, n, slab->class_index);
        }
        slabs++;
    }
    r->count = 0;
    HAK_COUNT(mid_ring_flushes, 1);
    HAK_PROBE(pool_ring_flush, blocks, slabs);
}

static void ring_push(void *p)
{
    if (ring.count == 0)
        hak_thread_register(); /* its exit flushes the ring */
    ring.block[ring.count++] = p;
    if (ring.count == RING_SLOTS)
        ring_flush();
}

/* Move the slab's remote list to its local free list. Caller owns the
 * slab or holds its class's central lock (abandoned slab). */
static uint32_t drain_remote(struct hak_slab *slab)
{
    if (!atomic_load_explicit(&slab->remote_head, memory_order_relaxed))
        return 0;
    void *list = atomic_exchange_explicit(&slab->remote_head, NULL, memory_order_acquire);
    atomic_store_explicit(&slab->remote_count, 0, memory_order_relaxed);
    if (!list)
        return 0;
    uint32_t n = 1;
    void *tail = list;
    while (*(void **)tail) {
        tail = *(void **)tail;
        n++;
    }
    *(void **)tail = slab->free_list;
    slab->free_list = list;
    slab->used -= n;
    slab_note_freed(slab, n);
    HAK_COUNT(tiny_remote_drained, n);
    HAK_PROBE(tiny_remote_drain, slab->class_index, n, hak_slab_base(slab));
    return n;
}

/* An empty owned slab leaves the class: its free blocks with it. */
static void owned_slab_release(struct class_state *cs, struct hak_slab *slab)
{
    cs->scav_net -= slab->bump - hak_slab_base(slab);
    hak_ss_release_slab(slab);
}

/* An owned slab has just reached used == 0: keep it or return it. */
static void owned_slab_emptied(struct class_state *cs, struct hak_slab *slab, uint32_t keep)
{
    if (cs->empty < keep) {
        cs->empty++;
        return;
    }
    slab_remove(owned_list(cs, slab), slab);
    owned_slab_release(cs, slab);
}

static uint32_t owned_drain(struct class_state *cs, struct hak_slab *slab)
{
    uint32_t n = drain_remote(slab);
    cs->scav_net += (int64_t)n * slab->block_size;
    if (n && slab->list == HAK_SLAB_FULL) {
        slab_remove(&cs->full, slab);
        slab_append(&cs->avail, slab, HAK_SLAB_AVAIL);
    }
    if (n && slab->used == 0)
        owned_slab_emptied(cs, slab, empty_keep);
    return n;
}

/* Drain the remote lists of full slabs other threads have freed into.
 * `all`: drain any non-empty list (the thread needs blocks); otherwise
 * only lists that reached the threshold. At most FULL_SCAN_MAX slabs are
 * looked at; the clean ones rotate to the back for the next scan. */
static void scan_full(struct hak_heap *heap, unsigned class_index, bool all)
{
    struct class_state *cs = &heap->cls[class_index];
    if (!atomic_load_explicit(&heap->remote_pending[class_index], memory_order_relaxed))
        return;
    atomic_store_explicit(&heap->remote_pending[class_index], 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    bool left = false;
    struct hak_slab *stop = NULL;
    for (unsigned looked = 0; cs->full.head && cs->full.head != stop; looked++) {
        if (looked == FULL_SCAN_MAX) {
            left = true;
            break;
        }
        struct hak_slab *slab = cs->full.head;
        void *remote = atomic_load_explicit(&slab->remote_head, memory_order_relaxed);
        if (remote && (all || atomic_load_explicit(&slab->remote_count, memory_order_relaxed) >= remote_threshold)) {
            if (owned_drain(cs, slab))
                continue;
        }
        if (remote)
            left = true;
        slab_remove(&cs->full, slab);
        slab_append(&cs->full, slab, HAK_SLAB_FULL);
        if (!stop)
            stop = slab;
    }
    if (left)
        atomic_store_explicit(&heap->remote_pending[class_index], 1, memory_order_relaxed);
}

/* ---- getting slabs ---- */

/* A slab just adopted (its owner set, under the central lock, before
 * the drain: a free that lands after the drain raises this heap's flag)
 * joins the heap's lists. True when it has a local block. */
static bool take_adopted(struct hak_heap *heap, unsigned class_index, struct hak_slab *slab)
{
    struct class_state *cs = &heap->cls[class_index];
    drain_remote(slab);
    if (slab_sparse(slab)) /* it was sparse for its last owner */
        slab_set_bin(slab, class_index);
    HAK_COUNT(tiny_adopted, 1);
    HAK_PROBE(tiny_adopt, class_index, hak_slab_base(slab), slab->used);
    if (slab->used == 0)
        cs->empty++;
    if (slab_has_local(slab)) {
        slab_push(&cs->avail, slab, HAK_SLAB_AVAIL);
        return true;
    }
    slab_push(&cs->full, slab, HAK_SLAB_FULL);
    return false;
}

/* A free into a slab abandoned by an exited thread adopts that slab: the
 * freeing thread is likely to free more of it (bench larson: each round's
 * threads free the blocks of the previous round's), and as its owner it
 * frees them without an atomic and can return the slab once it empties. */
static bool adopt_for_free(struct hak_heap *heap, struct hak_slab *slab, unsigned class_index)
{
    struct central *central = &centrals[class_index];
    pthread_mutex_lock(&central->lock);
    bool adopted = atomic_load_explicit(&slab->owner, memory_order_relaxed) == NULL &&
                   slab->class_index == class_index && slab->list == HAK_SLAB_ABANDONED;
    if (adopted) {
        slab_remove(&central->abandoned, slab);
        abandoned_count_add(central, -1);
        slab_set_owner(slab, heap);
    }
    pthread_mutex_unlock(&central->lock);
    if (adopted)
        take_adopted(heap, class_index, slab);
    return adopted;
}

static struct hak_slab *adopt(struct hak_heap *heap, unsigned class_index)
{
    struct central *central = &centrals[class_index];
    for (;;) {
        if (!atomic_load_explicit(&central->abandoned_count, memory_order_relaxed))
            return NULL;
        pthread_mutex_lock(&central->lock);
        struct hak_slab *slab = central->abandoned.head;
        if (slab) {
            slab_remove(&central->abandoned, slab);
            abandoned_count_add(central, -1);
            slab_set_owner(slab, heap);
        }
        pthread_mutex_unlock(&central->lock);
        if (!slab)
            return NULL;
        if (take_adopted(heap, class_index, slab))
            return slab;
    }
}

static struct hak_slab *find_slab(struct hak_heap *heap, unsigned class_index, int *reason, int *source)
{
    struct class_state *cs = &heap->cls[class_index];
    scan_full(heap, class_index, true);
    if (cs->avail.head) {
        *source = HAK_REFILL_REMOTE;
        return cs->avail.head;
    }
    if (adopt_partial) {
        struct hak_slab *slab = adopt(heap, class_index);
        if (slab) {
            *source = HAK_REFILL_ADOPTED;
            return slab;
        }
    }
    struct hak_slab *slab = hak_ss_acquire_slab(class_index, class_stride[class_index], reason);
    if (!slab)
        return NULL;
    slab_set_bin(slab, class_index);
    slab_set_owner(slab, heap);
    slab_push(&cs->avail, slab, HAK_SLAB_AVAIL);
    cs->empty++;
    *source = HAK_REFILL_FRESH;
    return slab;
}

/* Take up to `want` blocks from the thread's slabs into a chain (head
 * returned, *tail_out its last block). 0 with *reason set when the class
 * cannot grow. */
static uint32_t slabs_take(struct hak_heap *heap, unsigned class_index, uint32_t want, void **tail_out, void **head_out,
                           int *reason, int *source)
{
    struct class_state *cs = &heap->cls[class_index];
    uint32_t size = class_stride[class_index];
    uint32_t got = 0;
    void *head = NULL, *tail = NULL;
    *source = HAK_REFILL_PARTIAL;
    while (got < want) {
        struct hak_slab *slab = cs->avail.head;
        if (!slab && !(slab = find_slab(heap, class_index, reason, source)))
            break;
        if (slab->used == 0)
            cs->empty--;
        if (HAK_UNLIKELY(slab_sparse(slab)))
            slab_set_bin(slab, class_index);
        uint32_t before = got;
        for (;;) {
            while (got < want && slab->free_list) {
                void *block = slab->free_list;
                slab->free_list = *(void **)block;
                if (tail)
                    *(void **)tail = block;
                else
                    head = block;
                tail = block;
                got++;
            }
            if (got == want || !slab->scav_mask)
                break;
            slab_reclaim_page(cs, slab);
        }
        cs->scav_net -= (int64_t)(got - before) * size;
        if (got < want && slab->bump < slab->end) {
            char *bump = slab->bump;
            while (got < want && bump < slab->end) {
                if (tail)
                    *(void **)tail = bump;
                else
                    head = bump;
                tail = bump;
                bump += size;
                got++;
            }
            /* Atomic store: hakmem_owns() reads it from any thread. */
            __atomic_store_n(&slab->bump, bump, __ATOMIC_RELAXED);
            hak_ss_slab_carved(slab, bump);
        }
        slab->used += got - before;
        if (!slab_has_local(slab)) {
            uint32_t drained = drain_remote(slab);
            cs->scav_net += (int64_t)drained * size;
            if (drained == 0) {
                slab_remove(&cs->avail, slab);
                slab_push(&cs->full, slab, HAK_SLAB_FULL);
            } else if (slab->used == 0) {
                cs->empty++;
            }
        }
    }
    if (tail)
        *(void **)tail = NULL;
    *head_out = head;
    *tail_out = tail;
    heap->refilled += got;
    return got;
}

/* Give blocks of one class back to their (owned) slabs. */
/* keep: empty slabs the class may hold afterwards (empty_keep, or 0 to
 * return every slab that empties). */
static void slab_give_keep(struct class_state *cs, void *block, uint32_t keep)
{
    struct hak_slab *slab = hak_slab_of(block);
    *(void **)block = slab->free_list;
    slab->free_list = block;
    slab_note_freed(slab, 1);
    cs->scav_net += slab->block_size;
    if (slab->list == HAK_SLAB_FULL) {
        slab_remove(&cs->full, slab);
        slab_push(&cs->avail, slab, HAK_SLAB_AVAIL);
    }
    if (--slab->used == 0)
        owned_slab_emptied(cs, slab, keep);
    else if (slab->list == HAK_SLAB_AVAIL)
        maybe_set_sparse(cs, slab);
}

static void slab_give(struct class_state *cs, void *block)
{
    slab_give_keep(cs, block, empty_keep);
}

/* Magazine over capacity: its older half goes back to the slabs. */
static void magazine_spill(struct hak_heap *heap, unsigned class_index)
{
    struct class_state *cs = &heap->cls[class_index];
    uint32_t spill = cs->mag_count - cs->mag_count / 2;
    for (uint32_t k = 0; k < spill; k++)
        slab_give(cs, cs->mag[k]);
    memmove(cs->mag, cs->mag + spill, (cs->mag_count - spill) * sizeof(void *));
    cs->mag_count -= spill;
    if (++cs->spills_since_miss >= DRAIN_SPILLS && class_front[class_index] == FRONT_SLL)
        cs->drain_pending = 1;
    probe_spill(class_index, spill, HAK_SPILL_SLABS);
}

static void magazine_push(struct hak_heap *heap, unsigned class_index, void *block)
{
    struct class_state *cs = &heap->cls[class_index];
    if (cs->mag_count >= class_mag_cap[class_index])
        magazine_spill(heap, class_index);
    cs->mag[cs->mag_count++] = block;
}

/* ---- heaps and threads ---- */

static struct hak_heap *heap_get(void)
{
    heap_lock_take();
    struct hak_heap *heap = free_heaps;
    if (heap)
        free_heaps = heap->next_free;
    heap_lock_drop();
    if (!heap) {
        heap = hak_os_map(heap_bytes, HAK_PT_META);
        if (!heap)
            return NULL;
        void **storage = (void **)(heap + 1);
        for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
            heap->cls[c].mag = storage;
            storage += class_mag_base[c];
        }
    }
    heap->tid = (long)syscall(SYS_gettid);
    heap->refilled = 0;
    heap->bins = hak_tc_bins;
    heap->busy = &tc_busy;
    heap_lock_take();
    heap->live_prev = NULL;
    heap->live_next = live_heaps;
    if (live_heaps)
        live_heaps->live_prev = heap;
    live_heaps = heap;
    heap_lock_drop();
    return heap;
}

static void heap_put(struct hak_heap *heap)
{
    heap_lock_take();
    if (heap->live_prev)
        heap->live_prev->live_next = heap->live_next;
    else
        live_heaps = heap->live_next;
    if (heap->live_next)
        heap->live_next->live_prev = heap->live_prev;
    heap->next_free = free_heaps;
    free_heaps = heap;
    heap_lock_drop();
}

static bool thread_start(void)
{
    busy_enter();
    struct hak_heap *heap = heap_get();
    busy_leave();
    if (!heap)
        return false;
    heap->diet_seen = atomic_load_explicit(&diet_level, memory_order_relaxed);
    heap->sampling = false; /* a recycled heap: its last thread's mode */
    heap->sll_cut_pending = false;
    memset(heap->sll_cut, 0, sizeof heap->sll_cut);
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        hak_tc_bins[c].room = (int32_t)class_sll_limit[c];
    hak_my_heap = heap;
    tc_state = TC_ACTIVE;
    hak_thread_register();
    return true;
}

static void *fall_back(unsigned class_index, size_t size, int reason)
{
    if (class_index < HAK_NUM_TINY_CLASSES) {
        HAK_COUNT(tiny_fallbacks, 1);
        HAK_PROBE(tiny_fallback, reason, hak_class_band(class_index), size);
    } else {
        HAK_COUNT(mid_fallbacks, 1);
        HAK_PROBE(pool_fallback, HAK_PT_MID, reason, size, HAK_PT_LARGE);
    }
    if (class_index < HAK_NUM_TINY_CLASSES && reason != HAK_FALLBACK_REENTRANT && reason != HAK_FALLBACK_EXITED) {
        void *p = hak_mid_pop(hak_fs_tls_self(), FIRST_MID_CLASS);
        if (p)
            return p;
        return hak_small_alloc_slow(FIRST_MID_CLASS, size);
    }
    /* The SuperSlab tiers cannot serve it: the Large tier maps the block. */
    return hak_large_alloc(size, HAK_MIN_ALIGN, false);
}

/* Sweep the abandoned slabs of every class: take in what other threads
 * freed into them and return the ones that emptied. */
static void sweep_abandoned(void)
{
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        struct central *central = &centrals[c];
        if (!atomic_load_explicit(&central->abandoned_count, memory_order_relaxed))
            continue;
        /* Released under the lock (the SuperSlab lock nests inside a
         * class lock), so an abandoned slab never changes state unlocked. */
        pthread_mutex_lock(&central->lock);
        for (struct hak_slab *slab = central->abandoned.head, *next; slab; slab = next) {
            next = slab->next;
            drain_remote(slab);
            if (slab->used == 0) {
                slab_remove(&central->abandoned, slab);
                abandoned_count_add(central, -1);
                hak_ss_release_slab(slab);
            }
        }
        pthread_mutex_unlock(&central->lock);
    }
}

/* The class's magazine and quick slot back to the slabs (not its SLL). */
static uint32_t return_arrays(struct hak_heap *heap, unsigned class_index)
{
    struct class_state *cs = &heap->cls[class_index];
    struct quick_slot *q = &heap->quick[class_index];
    uint32_t returned = cs->mag_count + q->count;
    for (uint32_t k = 0; k < cs->mag_count; k++)
        slab_give_keep(cs, cs->mag[k], 0);
    cs->mag_count = 0;
    for (uint32_t k = 0; k < q->count; k++)
        slab_give_keep(cs, q->item[k], 0);
    q->count = 0;
    return returned;
}

/* Every block a class's caches hold (SLL, magazine, quick slot) goes back
 * to its slab; slabs that empty are returned (the thread keeps none of
 * this class). The caller sets the bin's room. Returns the blocks moved. */
static uint32_t return_cache(struct hak_heap *heap, struct hak_tc_bin *bin, unsigned class_index)
{
    struct class_state *cs = &heap->cls[class_index];
    uint32_t returned = return_arrays(heap, class_index);
    void *chain = bin->head;
    bin->head = NULL;
    for (void *next; chain; chain = next, returned++) {
        next = *(void **)chain;
        slab_give_keep(cs, chain, 0);
    }
    return returned;
}

/* A bin's room after its SLL was emptied: its limit, or 0 in sampling
 * mode (set_sampling). */
static int32_t sll_room(const struct hak_heap *heap, unsigned class_index)
{
    return heap->sampling ? 0 : (int32_t)class_sll_limit[class_index];
}

/* The empty slabs the class keeps go back to their SuperSlabs. */
static void release_empty_slabs(struct class_state *cs)
{
    for (struct hak_slab *slab = cs->avail.head, *next; slab && cs->empty; slab = next) {
        next = slab->next;
        if (slab->used == 0) {
            slab_remove(&cs->avail, slab);
            cs->empty--;
            owned_slab_release(cs, slab);
        }
    }
}

static uint32_t class_trim(struct hak_heap *heap, unsigned class_index)
{
    struct class_state *cs = &heap->cls[class_index];
    struct hak_tc_bin *bin = &hak_tc_bins[class_index];
    if (bin->room || bin->head)
        bin->room = sll_room(heap, class_index);
    uint32_t returned = return_cache(heap, bin, class_index);
    release_empty_slabs(cs);
    return returned;
}

static void trim_idle_classes(struct hak_heap *heap)
{
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        struct class_state *cs = &heap->cls[c];
        if (heap->epoch - cs->last_epoch < IDLE_EPOCHS)
            continue;
        if (!hak_tc_bins[c].head && !cs->mag_count && !heap->quick[c].count && !cs->empty)
            continue;
        uint32_t returned = class_trim(heap, c);
        probe_spill(c, returned, HAK_SPILL_IDLE);
    }
}

/* ---- the slow paths proper ---- */

static void *take_one(struct hak_heap *heap, unsigned class_index, int *reason)
{
    void *head, *tail;
    int source;
    if (!slabs_take(heap, class_index, 1, &tail, &head, reason, &source))
        return NULL;
    return head;
}

/* Serve an SLL miss: from the magazine, else a refill from the slabs. */
static void *refill_sll(struct hak_heap *heap, unsigned class_index, int *reason)
{
    struct class_state *cs = &heap->cls[class_index];
    struct hak_tc_bin *bin = &hak_tc_bins[class_index];
    uint32_t want = class_refill[class_index];
    void *head, *tail;
    int source;
    uint32_t got;
    HAK_PROBE(tiny_sll_miss, class_index, cs->mag_count);
    if (++cs->misses >= remote_tryrate) {
        cs->misses = 0;
        scan_full(heap, class_index, false);
    }
    if (cs->mag_count) {
        got = want < cs->mag_count ? want : cs->mag_count;
        void **top = cs->mag + cs->mag_count - got;
        for (uint32_t k = 0; k + 1 < got; k++)
            *(void **)top[k] = top[k + 1];
        head = top[0];
        tail = top[got - 1];
        *(void **)tail = NULL;
        cs->mag_count -= got;
        source = HAK_REFILL_MAGAZINE;
    } else {
        got = slabs_take(heap, class_index, want, &tail, &head, reason, &source);
        if (!got)
            return NULL;
    }
    probe_refill(class_index, got, source);
    /* Nested calls may have used the SLL meanwhile: append, do not overwrite. */
    *(void **)tail = bin->head;
    bin->head = *(void **)head;
    bin->room -= (int32_t)(got - 1);
    return head;
}

/* Up to `want` blocks from the thread's slabs into an array (magazine or
 * quick slot); false when none could be had. */
static bool refill_array(struct hak_heap *heap, unsigned class_index, uint32_t want, void **array, uint32_t *count,
                         int *reason)
{
    void *head, *tail;
    int source;
    uint32_t got = slabs_take(heap, class_index, want, &tail, &head, reason, &source);
    if (!got)
        return false;
    probe_refill(class_index, got, source);
    for (void *b = head; b; b = *(void **)b)
        array[(*count)++] = b;
    return true;
}

static void *mag_alloc(struct hak_heap *heap, unsigned class_index, int *reason)
{
    struct class_state *cs = &heap->cls[class_index];
    if (!cs->mag_count && !refill_array(heap, class_index, class_refill[class_index], cs->mag, &cs->mag_count, reason))
        return NULL;
    return cs->mag[--cs->mag_count];
}

static void *front_alloc(struct hak_heap *heap, unsigned class_index, int *reason)
{
    struct class_state *cs = &heap->cls[class_index];
    switch (class_front[class_index]) {
    case FRONT_SLL: return refill_sll(heap, class_index, reason);
    case FRONT_MAG: return mag_alloc(heap, class_index, reason);
    case FRONT_QUICK: {
        struct quick_slot *q = &heap->quick[class_index];
        if (q->count)
            return q->item[--q->count];
        while (q->count < QUICK_SLOTS && cs->mag_count)
            q->item[q->count++] = cs->mag[--cs->mag_count];
        if (!q->count && !refill_array(heap, class_index, QUICK_SLOTS, q->item, &q->count, reason))
            return NULL;
        return q->item[--q->count];
    }
    default: return take_one(heap, class_index, reason);
    }
}

static void flush_heap(struct hak_heap *heap, struct hak_tc_bin *bins, bool exiting, uint64_t *blocks, uint64_t *bytes);

/* Sampled-allocation mode (observe.c), while a tracer is attached to the
 * sample_* probes or HAKMEM_PROF=1: the thread's SLLs are emptied and
 * their limits set to 0, so that every malloc and free of the thread comes
 * to the slow path (served by the magazine) and the sampling countdown is
 * charged with every allocation, not only with refills. Without a tracer
 * the fast path is untouched: the mode is checked on slow paths only, and
 * a thread enters it at its next SLL miss. */
static void set_sampling(struct hak_heap *heap, bool on)
{
    heap->sampling = on;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        if (class_front[c] != FRONT_SLL)
            continue;
        struct hak_tc_bin *bin = &hak_tc_bins[c];
        if (on) {
            /* Detached first: a signal handler's fast path must find the
             * bin empty and closed, not a list being walked. */
            void *chain = bin->head;
            bin->head = NULL;
            bin->room = 0;
            while (chain) {
                void *b = chain;
                chain = *(void **)b;
                magazine_push(heap, c, b);
            }
        } else {
            bin->room = sll_room(heap, c);
        }
    }
}

/* Enter or leave sampling mode as a tracer attaches or detaches; the
 * caller holds tc_busy. Returns whether the thread samples now. */
static bool sync_sampling(struct hak_heap *heap)
{
    bool sampling = hak_sampling_active();
    if (HAK_UNLIKELY(sampling != heap->sampling))
        set_sampling(heap, sampling);
    return sampling;
}

HAK_NOINLINE void *hak_small_alloc_slow(unsigned class_index, size_t size)
{
    hak_ensure_init();
    if (hak_in_bootstrap())
        return hak_boot_alloc(size, HAK_MIN_ALIGN);
    if (busy_now())
        return fall_back(class_index, size, HAK_FALLBACK_REENTRANT);
    if (class_route_away[class_index] >= 0)
        return fall_back(class_index, size, class_route_away[class_index]);
    if (tc_state != TC_ACTIVE) {
        if (tc_state == TC_EXITED || !thread_start())
            return fall_back(class_index, size, HAK_FALLBACK_EXITED);
    }
    struct hak_tc_bin *bin = &hak_tc_bins[class_index];
    struct hak_heap *heap = hak_my_heap;
    busy_enter();
    bool sampling = sync_sampling(heap);
    busy_leave();
    if (HAK_UNLIKELY(sampling)) {
        /* Every allocation comes here in sampling mode: the countdown is
         * charged exactly. A sampled one is served by the Large tier, whose
         * free path sees it again (a Tiny free has no probe). */
        uint64_t weight = hak_sample_charge(hak_class_size[class_index]);
        if (weight) {
            /* The class's natural alignment: aligned requests (memalign)
             * are served from classes that guarantee it. */
            size_t align = class_stride[class_index] & -class_stride[class_index];
            void *sampled =
                hak_large_alloc_sampled(size, align < HAK_MIN_ALIGN ? HAK_MIN_ALIGN : align,
                                        class_index < HAK_NUM_TINY_CLASSES ? HAK_PT_TINY : HAK_PT_MID, weight);
            if (sampled)
                return sampled;
        }
    }
    int reason = HAK_FALLBACK_MMAP;
    busy_enter();
    if (ring.count)
        ring_flush();
    uint32_t level = atomic_load_explicit(&diet_level, memory_order_relaxed);
    if (HAK_UNLIKELY(heap->diet_seen != level)) {
        /* The RSS budget changed the caps: the whole cache goes back and
         * the bins restart under the new limits. */
        heap->diet_seen = level;
        flush_heap(heap, hak_tc_bins, false, NULL, NULL);
    }
    if (bin->head) {
        /* Refilled by a nested fallback call, or a Mid pop the decay
         * thread turned away (hak_mid_pop): served from the SLL, not
         * refilled on top. */
        void *p = bin->head;
        bin->head = *(void **)p;
        bin->room++;
        busy_leave();
        return p;
    }
    struct class_state *cs = &heap->cls[class_index];
    cs->last_epoch = ++heap->epoch;
    cs->spills_since_miss = 0;
    if (cs->draining) {
        cs->draining = 0;
        bin->room = sll_room(heap, class_index);
    }
    bool maintain = heap->epoch % IDLE_CHECK == 0;
    if (maintain)
        trim_idle_classes(heap);
    uint64_t t0 = hak_timing_start();
    void *p = heap->sampling && class_front[class_index] == FRONT_SLL ? mag_alloc(heap, class_index, &reason)
                                                                      : front_alloc(heap, class_index, &reason);
    hak_timing_stop(HAK_TIME_REFILL, t0);
    bool sweep = sweep_interval && heap->refilled >= sweep_interval;
    if (sweep)
        heap->refilled = 0;
    busy_leave();
    if (sweep)
        sweep_abandoned();
    if (maintain)
        hak_maintenance(); /* decay of every tier, the RSS budget */
    if (!p)
        return fall_back(class_index, size, reason);
    return p;
}

/* SLL over its limit: keep half, move the rest to the magazine. */
static void spill_sll(struct hak_heap *heap, unsigned class_index)
{
    struct hak_tc_bin *bin = &hak_tc_bins[class_index];
    /* Every block past `keep` moves, counted as it goes: the RSS budget may
     * have lowered the limit since `room` was last set, so the limit minus
     * room is not the list's length. */
    uint32_t limit = __atomic_load_n(&class_sll_limit[class_index], __ATOMIC_RELAXED);
    uint32_t keep = limit / 2;
    void **cut = &bin->head;
    for (uint32_t k = 0; k < keep && *cut; k++)
        cut = (void **)*cut;
    void *spill = *cut;
    *cut = NULL;
    uint32_t spilled = 0;
    while (spill) {
        void *block = spill;
        spill = *(void **)block;
        magazine_push(heap, class_index, block);
        spilled++;
    }
    bin->room = (int32_t)(limit - keep);
    probe_spill(class_index, spilled, HAK_SPILL_MAGAZINE);
}

static void owner_free(struct hak_heap *heap, unsigned class_index, void *p)
{
    struct class_state *cs = &heap->cls[class_index];
    if (HAK_UNLIKELY(heap->sampling) && class_front[class_index] == FRONT_SLL) {
        magazine_push(heap, class_index, p);
        return;
    }
    switch (class_front[class_index]) {
    case FRONT_SLL: {
        struct hak_tc_bin *bin = &hak_tc_bins[class_index];
        if (cs->draining) {
            /* Only being freed: no empty slab kept either (bench phases
             * kept one per class after freeing all but 1 % of its blocks). */
            slab_give_keep(cs, p, 0);
            break;
        }
        if (HAK_UNLIKELY(slab_sparse(hak_slab_of(p)))) {
            slab_give(cs, p);
            break;
        }
        *(void **)p = bin->head;
        bin->head = p;
        if (--bin->room < 0)
            spill_sll(heap, class_index);
        if (cs->drain_pending) {
            cs->drain_pending = 0;
            cs->draining = 1;
            uint32_t returned = class_trim(heap, class_index);
            bin->room = 0; /* every free of the class comes here */
            probe_spill(class_index, returned, HAK_SPILL_IDLE);
        }
        break;
    }
    case FRONT_MAG: magazine_push(heap, class_index, p); break;
    case FRONT_QUICK: {
        struct quick_slot *q = &heap->quick[class_index];
        if (q->count == QUICK_SLOTS) {
            for (uint32_t k = 0; k < QUICK_SLOTS; k++)
                magazine_push(heap, class_index, q->item[k]);
            q->count = 0;
        }
        q->item[q->count++] = p;
        break;
    }
    default: slab_give(cs, p); break;
    }
}

HAK_NOINLINE void hak_small_free_slow(void *p)
{
    struct hak_slab *slab = hak_slab_of(p);
    unsigned class_index = slab->class_index;
    if (class_index >= HAK_NUM_CLASSES) {
        hak_report_misuse("free(): pointer into a free slab (double free?)", p);
        return;
    }
    struct hak_heap *heap = hak_my_heap;
    uintptr_t owner_tp = atomic_load_explicit(&slab->owner_tp, memory_order_relaxed);
    if (owner_tp == (uintptr_t)__builtin_thread_pointer() && !busy_now()) {
        busy_enter();
        /* A thread whose frees spill (its SLLs never run dry) enters or
         * leaves sampling mode here too. */
        sync_sampling(heap);
        owner_free(heap, class_index, p);
        maybe_scavenge(&heap->cls[class_index], class_index);
        busy_leave();
        return;
    }
    if (owner_tp == 0 && adopt_partial && tc_state == TC_ACTIVE && !busy_now() &&
        atomic_load_explicit(&slab->owner, memory_order_relaxed) == NULL) {
        busy_enter();
        bool adopted = adopt_for_free(heap, slab, class_index);
        if (adopted)
            owner_free(heap, class_index, p);
        busy_leave();
        if (adopted)
            return;
    }
    /* Not after the thread's exit flush: nothing would flush the ring
     * again (tests/c/threads_fork.c thread_churn: frees from TLS
     * destructors stranded a block or two per thread, each pinning its
     * slab: 104 MiB resident after 3000 threads). */
    if (ring_enabled && class_index >= HAK_NUM_TINY_CLASSES && !busy_now() && tc_state != TC_EXITED) {
        busy_enter();
        ring_push(p);
        busy_leave();
        return;
    }
    remote_free(slab, p, class_index);
}

/* Return every cached block of the thread to its slab; on exit, also
 * hand every owned slab over (released when empty, else abandoned for
 * another thread to adopt). */
static void flush_heap(struct hak_heap *heap, struct hak_tc_bin *bins, bool exiting, uint64_t *blocks, uint64_t *bytes)
{
    uint64_t total_blocks = 0, total_bytes = 0;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        struct hak_tc_bin *bin = &bins[c];
        struct class_state *cs = &heap->cls[c];
        uint32_t cached = return_cache(heap, bin, c);
        bin->room = exiting ? 0 : sll_room(heap, c);
        cs->draining = 0;
        cs->drain_pending = 0;
        cs->spills_since_miss = 0;
        cs->scav_net = 0;
        total_blocks += cached;
        total_bytes += (uint64_t)cached * hak_class_size[c];

        /* Owned slabs: empty ones go back now; on exit the rest are
         * abandoned. Whatever other threads free after the drain waits
         * on the slab's remote list for its adopter. An abandoned slab
         * changes owner and list only under its class's central lock. */
        struct hak_slab *lists[2] = {cs->avail.head, cs->full.head};
        cs->avail = cs->full = (struct slab_list){NULL, NULL};
        cs->empty = 0;
        for (int l = 0; l < 2; l++) {
            for (struct hak_slab *slab = lists[l], *next; slab; slab = next) {
                next = slab->next;
                slab->next = slab->prev = NULL;
                slab->list = HAK_SLAB_UNLISTED;
                drain_remote(slab);
                if (slab->used == 0) {
                    hak_ss_release_slab(slab);
                } else if (exiting) {
                    HAK_COUNT(tiny_abandoned, 1);
                    HAK_PROBE(tiny_abandon, c, hak_slab_base(slab), slab->used);
                    pthread_mutex_lock(&centrals[c].lock);
                    slab_set_owner(slab, NULL);
                    slab_push(&centrals[c].abandoned, slab, HAK_SLAB_ABANDONED);
                    abandoned_count_add(&centrals[c], 1);
                    pthread_mutex_unlock(&centrals[c].lock);
                } else {
                    /* In order: sparse slabs stay at the back. */
                    slab_append(slab_has_local(slab) ? &cs->avail : &cs->full, slab,
                                slab_has_local(slab) ? HAK_SLAB_AVAIL : HAK_SLAB_FULL);
                }
            }
        }
        atomic_store_explicit(&heap->remote_pending[c], 0, memory_order_relaxed);
        if (!exiting && cs->full.head)
            atomic_store_explicit(&heap->remote_pending[c], 1, memory_order_relaxed);
    }
    if (exiting)
        heap_put(heap);
    if (blocks)
        *blocks = total_blocks;
    if (bytes)
        *bytes = total_bytes;
}

void hak_small_thread_flush(bool exiting, uint64_t *blocks, uint64_t *bytes)
{
    if (ring.count && !busy_now()) {
        busy_enter();
        ring_flush();
        busy_leave();
    }
    struct hak_heap *heap = hak_my_heap;
    if (blocks)
        *blocks = 0;
    if (bytes)
        *bytes = 0;
    if (heap != HAK_NO_HEAP && !busy_now()) {
        busy_enter();
        if (exiting)
            hak_my_heap = HAK_NO_HEAP;
        flush_heap(heap, hak_tc_bins, exiting, blocks, bytes);
        busy_leave();
    } else if (heap != HAK_NO_HEAP && exiting) {
        /* Exiting from inside a slow path: the heap is left as it is, and
         * its TLS (busy flag, bins) is about to go with the thread. Marked
         * under heap_lock, so that the decay thread is not reading that TLS
         * meanwhile, and never reads it again; the lock is waited for
         * unless the interrupted slow path holds it itself. */
        bool relock = !holds_heap_lock;
        if (relock)
            pthread_mutex_lock(&heap_lock);
        heap->busy = &forever_busy;
        if (relock)
            pthread_mutex_unlock(&heap_lock);
    }
    if (exiting)
        tc_state = TC_EXITED;
}

/* ---- idle threads ----
 *
 * A thread that stops calling the allocator keeps what its caches hold
 * until it calls again or exits: its magazines, its SLLs, the empty slab
 * it keeps per class, the free pages of slabs its last frees did not
 * scavenge. The decay thread hands these back for a thread that has
 * neither entered the slow paths nor changed an SLL for a whole tick,
 * with the thread shut out of its slow paths (busy_enter) and of its Mid
 * pops (hak_mid_pop) meanwhile. Of the SLLs, only the Mid ones are cut,
 * and each keeps its first block (the free fast path pushes on it with no
 * flag); the Tiny pop takes no flag, so the Tiny SLLs stay (296 KiB at
 * most, with 201.5 KiB for the Mid SLLs' first blocks). bench phases,
 * 1.5 s idle after freeing all but 73 KB: see README. */

/* The heap's thread's TLS object (its bins come first in it). */
static struct hak_tls *tls_of(struct hak_heap *heap)
{
    return (struct hak_tls *)(void *)heap->bins;
}

/* What the thread's fast paths change (its SLL heads and rooms), read from
 * its TLS. A snapshot: a thread that mallocs and frees the same blocks
 * over and over has the same heads at every tick and counts as idle, which
 * costs it a refill per class now and then (a stale read is harmless too:
 * the handshake decides, not this). */
HAK_RACY_READS static uint64_t fronts_digest(struct hak_heap *heap)
{
    uint64_t digest = 0;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        const volatile struct hak_tc_bin *bin = &heap->bins[c];
        uint64_t head = (uintptr_t)bin->head;
        uint64_t room = (uint32_t)bin->room;
        digest = (digest ^ head ^ (room << 48)) * 0x100000001b3ull;
    }
    return digest;
}

/* A Mid SLL, all but its head, back to the slabs. The thread's pops are
 * shut out (mid_stop); its frees still push, but a push only writes the
 * head and the pushed block's link, never the link of the block that is
 * the head here (free's fast path writes that link before the head). */
static uint32_t cut_mid_sll(struct hak_heap *heap, unsigned class_index)
{
    void *first = __atomic_load_n(&heap->bins[class_index].head, __ATOMIC_ACQUIRE);
    if (!first || !*(void **)first)
        return 0;
    void *chain = *(void **)first;
    *(void **)first = NULL;
    struct class_state *cs = &heap->cls[class_index];
    uint32_t cut = 0;
    for (void *next; chain; chain = next, cut++) {
        next = *(void **)chain;
        slab_give_keep(cs, chain, 0);
    }
    heap->sll_cut[class_index] += cut;
    heap->sll_cut_pending = true;
    return cut;
}

/* Returns the blocks and kept empty slabs handed back. */
static uint32_t reclaim_heap(struct hak_heap *heap)
{
    uint32_t returned = 0;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        struct class_state *cs = &heap->cls[c];
        uint32_t blocks = return_arrays(heap, c);
        if (c >= FIRST_MID_CLASS && class_front[c] == FRONT_SLL)
            blocks += cut_mid_sll(heap, c);
        returned += cs->empty;
        release_empty_slabs(cs);
        scavenge_class_all(cs);
        if (blocks)
            probe_spill(c, blocks, HAK_SPILL_IDLE);
        returned += blocks;
    }
    return returned;
}

#define RECLAIM_BATCH 64

void hak_small_reclaim_idle(void)
{
    struct hak_heap *idle[RECLAIM_BATCH];
    uint32_t n = 0;
    pthread_mutex_lock(&heap_lock);
    for (struct hak_heap *heap = live_heaps; heap && n < RECLAIM_BATCH; heap = heap->live_next) {
        /* A heap whose thread is gone: its TLS may be unmapped. */
        if (heap->busy == &forever_busy || !hak_gate_close_if_quiet(&heap->gate, fronts_digest(heap)))
            continue;
        idle[n++] = heap;
        __atomic_store_n(&tls_of(heap)->mid_stop, 1, __ATOMIC_RELAXED);
    }
    /* heap_lock stays held from closing the gates to opening them: a fork
     * in between would leave a child whose thread waits forever at a
     * closed gate. */
    bool fenced = n && hak_membarrier();
    uint32_t owned = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct hak_heap *heap = idle[i];
        if (fenced && hak_gate_owned(heap->busy) && !__atomic_load_n(&tls_of(heap)->mid_busy, __ATOMIC_ACQUIRE)) {
            idle[owned++] = heap;
            continue;
        }
        /* Busy after all: it goes on at once, not after the others. */
        __atomic_store_n(&tls_of(heap)->mid_stop, 0, __ATOMIC_RELEASE);
        hak_gate_open(&heap->gate, false);
    }
    uint32_t returned = 0;
    for (uint32_t i = 0; i < owned; i++) {
        struct hak_heap *heap = idle[i];
        HAK_TSAN_ACQUIRE(tls_of(heap));
        returned += reclaim_heap(heap);
        HAK_TSAN_RELEASE(tls_of(heap));
        __atomic_store_n(&tls_of(heap)->mid_stop, 0, __ATOMIC_RELEASE);
        hak_gate_open(&heap->gate, true);
    }
    pthread_mutex_unlock(&heap_lock);
    /* The slabs that came back were idle a tick already: purged now, with
     * (a rare case) the other free slabs. */
    if (returned)
        hak_ss_purge_dirty();
}

void *hak_small_alloc(size_t size)
{
    return hak_small_alloc_inline(size);
}

void hak_small_free(void *p)
{
    hak_small_free_inline(p);
}

bool hak_small_can_align(size_t size, size_t align)
{
    return align <= HAK_SLAB_SIZE && size <= HAK_SMALL_MAX && align <= HAK_SMALL_MAX;
}

/* Blocks start at the slab base (64 KiB aligned), so every block of a class
 * whose stride is a multiple of `align` is aligned: pick the first such
 * class (the padded Mid classes are 64-byte aligned only). */
void *hak_small_alloc_aligned(size_t size, size_t align)
{
    size_t want = size > align ? size : align;
    if (want > HAK_SMALL_MAX)
        return NULL;
    for (unsigned c = hak_size_to_class(want); c < HAK_NUM_CLASSES; c++) {
        if (class_stride[c] % align == 0)
            return hak_small_alloc_inline(hak_class_size[c]);
    }
    return NULL;
}

size_t hak_small_usable(const void *p)
{
    return hak_small_usable_inline(p);
}

bool hak_small_is_live(const void *p)
{
    const struct hak_slab *slab = hak_slab_of(p);
    if (slab->class_index >= HAK_NUM_CLASSES)
        return false;
    const char *base = hak_slab_base(slab);
    const char *q = p;
    const char *bump = __atomic_load_n(&slab->bump, __ATOMIC_RELAXED);
    return q >= base && q < bump && (size_t)(q - base) % slab->block_size == 0;
}

/* malloc_trim: this thread's caches and empty slabs, every abandoned slab
 * that emptied, then every empty SuperSlab. Other threads' caches are
 * theirs: they return on the thread's exit or its own trim. */
bool hak_small_busy(void)
{
    return busy_now();
}

/* The RSS budget's diet: every class's magazine cap and SLL limit `step`
 * blocks lower per level (never under its floor); up == true relaxes one
 * level. Threads apply it at their next slow-path allocation. Returns
 * the blocks now cut per class, or -1 when nothing changed (every class
 * at its floor, or no diet to relax). */
long hak_small_diet(uint32_t step, bool up)
{
    uint32_t level = atomic_load_explicit(&diet_level, memory_order_relaxed);
    if (up ? level == 0 : false)
        return -1;
    uint32_t next = up ? level - 1 : level + 1;
    uint64_t cut = (uint64_t)next * step;
    bool changed = up;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        uint32_t floor = class_floor[c];
        uint32_t mag = class_mag_base[c] > floor + cut ? (uint32_t)(class_mag_base[c] - cut) : floor;
        if (mag > class_mag_base[c])
            mag = class_mag_base[c];
        uint32_t sll = class_sll_base[c] > floor + cut ? (uint32_t)(class_sll_base[c] - cut) : floor;
        if (sll > class_sll_base[c])
            sll = class_sll_base[c];
        if (mag != class_mag_cap[c] || (class_sll_base[c] && sll != class_sll_limit[c]))
            changed = true;
        __atomic_store_n(&class_mag_cap[c], mag, __ATOMIC_RELAXED);
        if (class_sll_base[c])
            __atomic_store_n(&class_sll_limit[c], sll, __ATOMIC_RELAXED);
        __atomic_store_n(&class_refill[c], class_refill_base[c] < mag ? class_refill_base[c] : mag, __ATOMIC_RELAXED);
    }
    if (!changed)
        return -1;
    atomic_store_explicit(&diet_level, next, memory_order_relaxed);
    return (long)cut;
}

size_t hak_small_trim(void)
{
    hak_small_thread_flush(false, NULL, NULL);
    struct hak_heap *heap = hak_my_heap;
    if (heap != HAK_NO_HEAP && !busy_now()) {
        busy_enter();
        for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
            scavenge_class_all(&heap->cls[c]);
        busy_leave();
    }
    sweep_abandoned();
    return hak_ss_trim();
}

void hak_small_lock_all(void)
{
    pthread_mutex_lock(&heap_lock);
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        pthread_mutex_lock(&centrals[c].lock);
    hak_ss_lock();
}

void hak_small_unlock_all(void)
{
    hak_ss_unlock();
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        pthread_mutex_unlock(&centrals[c].lock);
    pthread_mutex_unlock(&heap_lock);
}

/* In the child of fork() only the forking thread exists. The other
 * threads' heaps would own their slabs forever, and glibc reuses their
 * stacks (so their thread pointers) for the child's next threads, whose
 * frees would then take those slabs for their own: hand every other heap
 * back as if its thread had exited, its SLL read from its TLS, which the
 * child still has. */
void hak_small_reset_after_fork(void)
{
    hak_ss_reset_lock();
    pthread_mutex_init(&heap_lock, NULL);
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        pthread_mutex_init(&centrals[c].lock, NULL);
    struct hak_heap *mine = hak_my_heap;
    uint8_t busy = atomic_load_explicit(&tc_busy, memory_order_relaxed);
    atomic_store_explicit(&tc_busy, 1, memory_order_relaxed);
    for (struct hak_heap *heap = live_heaps, *next; heap; heap = next) {
        next = heap->live_next;
        if (heap == mine)
            continue;
        if (*heap->busy) {
            /* Forked while that thread was inside a slow path: its lists
             * may be half edited. Its slabs only lose their owner (the
             * child leaks them rather than trust their counts). */
            hak_ss_disown(heap);
            heap->busy = &forever_busy;
            continue;
        }
        flush_heap(heap, heap->bins, true, NULL, NULL);
    }
    atomic_store_explicit(&tc_busy, busy, memory_order_relaxed);
}
