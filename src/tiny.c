/* Slow paths of the SuperSlab tiers: thread-cache refill and spill, the
 * per-class central lists of partially used slabs, routing between Tiny
 * and the next tier, and thread start/exit.
 *
 * Locking: each class has its own central lock; the SuperSlab lock is
 * taken either alone or inside a class lock, never the other way round.
 * Empty slabs are purged outside every lock (madvise is a syscall). */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "config.h"
#include "probes.h"
#include "tiny.h"

const uint32_t hak_class_size[HAK_NUM_CLASSES] = {
    8,    16,   32,   48,   64,    80,    96,    112,   128,   160,   192,   224,   256,   320,
    384,  448,  512,  640,  768,   896,   1024,  1280,  1536,  1792,  2048,  2560,  3072,  3584,
    4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
};

/* Class for each 8-byte step up to 1 KiB, indexed by (size + 7) >> 3. */
const uint8_t hak_small_class_lut[(HAK_TINY_MAX >> 3) + 1] = {
#define L16(c) c, c
#define L32(c) c, c, c, c
#define L64(c) c, c, c, c, c, c, c, c
#define L128(c) L64(c), L64(c)
    0,     0,       1,       L16(2), L16(3), L16(4), L16(5), L16(6), L16(7), L16(8), L32(9), L32(10),
    L32(11), L32(12), L64(13), L64(14), L64(15), L64(16), L128(17), L128(18), L128(19), L128(20),
#undef L16
#undef L32
#undef L64
#undef L128
};

HAK_TLS struct hak_tc_bin hak_tc_bins[HAK_NUM_CLASSES];

enum tc_state { TC_NEW = 0, TC_ACTIVE = 1, TC_EXITED = 2 };
static HAK_TLS uint8_t tc_state;

struct central {
    pthread_mutex_t lock;
    struct hak_slab *partial; /* slabs with a free or never-used block */
    uint32_t empty_slabs;     /* of those, slabs with no block out */
} __attribute__((aligned(64)));

static struct central centrals[HAK_NUM_CLASSES];

/* Per-class parameters, fixed at initialisation from the configuration. */
static uint32_t class_cap[HAK_NUM_CLASSES];
static uint32_t class_refill[HAK_NUM_CLASSES];
static uint32_t class_spill_limit[HAK_NUM_CLASSES];
/* Reason a Tiny class is routed to the next tier, or -1. */
static int8_t class_route_away[HAK_NUM_CLASSES];

/* Empty slabs a class keeps (not purged) so that a live set oscillating
 * around a slab boundary does not madvise on every swing. */
#define CENTRAL_EMPTY_KEEP 2
/* First class above the Tiny tier: where Tiny falls back to. */
#define FIRST_MID_CLASS HAK_NUM_TINY_CLASSES

static uint32_t default_cap(unsigned class_index)
{
    uint32_t size = hak_class_size[class_index];
    if (class_index >= HAK_NUM_TINY_CLASSES) {
        /* bench/mixed_mid: 64 KiB per class cost one refill or spill per
         * ten operations; 256 KiB (at least 16 blocks) cut that fivefold. */
        uint32_t cap = (uint32_t)(256 * HAK_KiB / size);
        return cap < 16 ? 16 : cap;
    }
    /* 512 blocks up to 64 B, then about 32 KiB of blocks per class. */
    if (size <= 64)
        return 512;
    uint32_t cap = (uint32_t)(32 * HAK_KiB / size);
    return cap < 32 ? 32 : cap;
}

static void configure_classes(void)
{
    long long profile = hak_cfg_int(HAK_CFG_TINY_PROFILE);
    bool tiny_enabled = hak_cfg_int(HAK_CFG_WRAP_TINY) && hak_cfg_int(HAK_CFG_TINY_USE_SUPERSLAB);
    uint32_t keep_factor = hak_cfg_int(HAK_CFG_FREE_POLICY) == HAK_FREE_KEEP ? 4 : 1;

    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        pthread_mutex_init(&centrals[c].lock, NULL);
        uint32_t cap = default_cap(c);
        uint32_t refill;
        class_route_away[c] = -1;
        if (c < HAK_NUM_TINY_CLASSES) {
            unsigned band = hak_class_band(c);
            bool hot = band <= 3;
            if (hak_cfg_is_set(HAK_CFG_TINY_MAG_CAP_C0 + band))
                cap = (uint32_t)hak_cfg_int(HAK_CFG_TINY_MAG_CAP_C0 + band);
            else if (hak_cfg_is_set(HAK_CFG_TINY_MAG_CAP))
                cap = (uint32_t)hak_cfg_int(HAK_CFG_TINY_MAG_CAP);
            refill = (uint32_t)hak_cfg_int(hot ? HAK_CFG_TINY_REFILL_MAX_HOT : HAK_CFG_TINY_REFILL_MAX);
            if (hot && hak_cfg_is_set(HAK_CFG_TINY_REFILL_MAX_HOT_C0 + band))
                refill = (uint32_t)hak_cfg_int(HAK_CFG_TINY_REFILL_MAX_HOT_C0 + band);
            else if (hak_cfg_is_set(HAK_CFG_TINY_REFILL_MAX_C0 + band))
                refill = (uint32_t)hak_cfg_int(HAK_CFG_TINY_REFILL_MAX_C0 + band);

            if (!tiny_enabled)
                class_route_away[c] = HAK_FALLBACK_DISABLED;
            else if (profile == HAK_PROFILE_OFF || (profile == HAK_PROFILE_HOT && band == 7))
                class_route_away[c] = HAK_FALLBACK_ROUTING;
        } else {
            refill = cap / 2 ? cap / 2 : 1;
        }
        if (refill > cap)
            refill = cap;
        class_cap[c] = cap;
        class_refill[c] = refill;
        class_spill_limit[c] = cap * keep_factor + (uint32_t)hak_cfg_int(HAK_CFG_TINY_SPILL_HYST);
    }
}

void hak_small_init(void)
{
    configure_classes();
}

static void partial_push(struct central *c, struct hak_slab *slab)
{
    slab->prev = NULL;
    slab->next = c->partial;
    if (c->partial)
        c->partial->prev = slab;
    c->partial = slab;
    slab->on_partial = 1;
}

static void partial_remove(struct central *c, struct hak_slab *slab)
{
    if (slab->prev)
        slab->prev->next = slab->next;
    else
        c->partial = slab->next;
    if (slab->next)
        slab->next->prev = slab->prev;
    slab->next = slab->prev = NULL;
    slab->on_partial = 0;
}

/* Move up to `want` blocks of the class into a chain; returns the count
 * and sets *reason when the class cannot grow. */
static uint32_t central_take(unsigned class_index, uint32_t want, void **chain, int *reason, int *source)
{
    struct central *c = &centrals[class_index];
    uint32_t size = hak_class_size[class_index];
    uint32_t got = 0;
    void *head = NULL, **tail = &head;
    *source = HAK_REFILL_PARTIAL;

    pthread_mutex_lock(&c->lock);
    while (got < want) {
        struct hak_slab *slab = c->partial;
        if (!slab) {
            pthread_mutex_unlock(&c->lock);
            slab = hak_ss_acquire_slab(class_index, size, reason);
            pthread_mutex_lock(&c->lock);
            if (!slab)
                break;
            *source = HAK_REFILL_FRESH;
            partial_push(c, slab);
            c->empty_slabs++;
        }
        if (slab->used == 0)
            c->empty_slabs--;
        while (got < want && slab->free_list) {
            void *block = slab->free_list;
            slab->free_list = *(void **)block;
            *tail = block;
            tail = (void **)block;
            got++;
            slab->used++;
        }
        while (got < want && slab->bump < slab->end) {
            void *block = slab->bump;
            slab->bump += size;
            *tail = block;
            tail = (void **)block;
            got++;
            slab->used++;
        }
        if (!slab->free_list && slab->bump >= slab->end)
            partial_remove(c, slab);
    }
    pthread_mutex_unlock(&c->lock);
    *tail = NULL;
    *chain = head;
    return got;
}

/* Return a chain of `count` blocks of one class to their slabs. */
static void central_give(unsigned class_index, void *chain, uint32_t count)
{
    struct central *c = &centrals[class_index];
    struct hak_slab *to_release = NULL;

    pthread_mutex_lock(&c->lock);
    for (uint32_t k = 0; k < count && chain; k++) {
        void *block = chain;
        chain = *(void **)block;
        struct hak_slab *slab = hak_slab_of(block);
        *(void **)block = slab->free_list;
        slab->free_list = block;
        if (!slab->on_partial)
            partial_push(c, slab);
        if (--slab->used == 0) {
            if (c->empty_slabs < CENTRAL_EMPTY_KEEP) {
                c->empty_slabs++;
            } else {
                partial_remove(c, slab);
                slab->next = to_release;
                to_release = slab;
            }
        }
    }
    pthread_mutex_unlock(&c->lock);

    while (to_release) {
        struct hak_slab *slab = to_release;
        to_release = slab->next;
        hak_ss_release_slab(slab);
    }
}

static void thread_start(void)
{
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        hak_tc_bins[c].limit = class_route_away[c] < 0 ? class_spill_limit[c] : 0;
    tc_state = TC_ACTIVE;
    hak_thread_register();
}

static void *route_away(unsigned class_index, size_t size, int reason)
{
    HAK_PROBE(tiny_fallback, reason, class_index < HAK_NUM_TINY_CLASSES ? hak_class_band(class_index) : 8, size);
    if (class_index < HAK_NUM_TINY_CLASSES) {
        struct hak_tc_bin *bin = &hak_tc_bins[FIRST_MID_CLASS];
        void *p = bin->head;
        if (p) {
            bin->head = *(void **)p;
            bin->count--;
            return p;
        }
        return hak_small_alloc_slow(FIRST_MID_CLASS, size);
    }
    /* The SuperSlab tiers cannot grow: the Large tier maps the block. */
    return hak_large_alloc(size, HAK_MIN_ALIGN, false);
}

HAK_NOINLINE void *hak_small_alloc_slow(unsigned class_index, size_t size)
{
    hak_ensure_init();
    if (hak_in_bootstrap())
        return hak_boot_alloc(size, HAK_MIN_ALIGN);
    if (tc_state == TC_NEW)
        thread_start();
    if (class_route_away[class_index] >= 0)
        return route_away(class_index, size, class_route_away[class_index]);

    struct hak_tc_bin *bin = &hak_tc_bins[class_index];
    if (bin->head) { /* served by a fallback call that refilled this bin */
        void *p = bin->head;
        bin->head = *(void **)p;
        bin->count--;
        return p;
    }
    uint32_t want = tc_state == TC_ACTIVE ? class_refill[class_index] : 1;
    void *chain;
    int reason = HAK_FALLBACK_MMAP, source;
    uint32_t got = central_take(class_index, want, &chain, &reason, &source);
    if (got == 0)
        return route_away(class_index, size, reason);
    HAK_COUNT(tiny_refills, 1);
    HAK_PROBE(tiny_refill, class_index, got, source);

    void *p = chain;
    if (tc_state == TC_ACTIVE) {
        bin->head = *(void **)p;
        bin->count += got - 1;
    }
    return p;
}

HAK_NOINLINE void hak_small_free_slow(void *p, unsigned class_index)
{
    if (class_index >= HAK_NUM_CLASSES) {
        hak_report_misuse("free(): pointer into a free slab (double free?)", p);
        return;
    }
    if (tc_state == TC_NEW)
        thread_start();
    struct hak_tc_bin *bin = &hak_tc_bins[class_index];
    if (tc_state != TC_ACTIVE || bin->limit == 0) {
        central_give(class_index, p, 1);
        return;
    }
    /* Over the limit: keep this block, send the oldest half back. */
    *(void **)p = bin->head;
    bin->head = p;
    bin->count++;
    uint32_t keep = class_cap[class_index] / 2;
    void **cut = &bin->head;
    for (uint32_t k = 0; k < keep && *cut; k++)
        cut = (void **)*cut;
    void *spill = *cut;
    *cut = NULL;
    uint32_t spilled = bin->count - keep;
    bin->count = keep;
    central_give(class_index, spill, spilled);
    HAK_COUNT(tiny_spills, 1);
    HAK_PROBE(tiny_spill, class_index, spilled);
}

/* Hand the whole thread cache back (thread exit, malloc_trim). */
void hak_small_thread_flush(bool exiting, uint64_t *blocks, uint64_t *bytes)
{
    uint64_t total_blocks = 0, total_bytes = 0;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        struct hak_tc_bin *bin = &hak_tc_bins[c];
        total_blocks += bin->count;
        total_bytes += (uint64_t)bin->count * hak_class_size[c];
        if (bin->count)
            central_give(c, bin->head, bin->count);
        bin->head = NULL;
        bin->count = 0;
        if (exiting)
            bin->limit = 0;
    }
    if (exiting)
        tc_state = TC_EXITED;
    if (blocks)
        *blocks = total_blocks;
    if (bytes)
        *bytes = total_bytes;
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
 * whose size is a multiple of `align` is aligned: pick the first such class. */
void *hak_small_alloc_aligned(size_t size, size_t align)
{
    size_t want = size > align ? size : align;
    if (want > HAK_SMALL_MAX)
        return NULL;
    for (unsigned c = hak_size_to_class(want); c < HAK_NUM_CLASSES; c++) {
        if (hak_class_size[c] % align == 0)
            return hak_small_alloc_inline(hak_class_size[c]);
    }
    return NULL;
}

size_t hak_small_usable(const void *p)
{
    unsigned c = hak_slab_of(p)->class_index;
    return c < HAK_NUM_CLASSES ? hak_class_size[c] : 0;
}

bool hak_small_is_live(const void *p)
{
    const struct hak_slab *slab = hak_slab_of(p);
    if (slab->class_index >= HAK_NUM_CLASSES)
        return false;
    const char *base = hak_slab_base(slab);
    const char *q = p;
    return q >= base && q < slab->bump && (size_t)(q - base) % slab->block_size == 0;
}

size_t hak_small_trim(void)
{
    hak_small_thread_flush(false, NULL, NULL);
    /* Release the empty slabs every class keeps. */
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        struct central *central = &centrals[c];
        struct hak_slab *to_release = NULL;
        pthread_mutex_lock(&central->lock);
        for (struct hak_slab *slab = central->partial, *next; slab; slab = next) {
            next = slab->next;
            if (slab->used == 0) {
                partial_remove(central, slab);
                central->empty_slabs--;
                slab->next = to_release;
                to_release = slab;
            }
        }
        pthread_mutex_unlock(&central->lock);
        while (to_release) {
            struct hak_slab *slab = to_release;
            to_release = slab->next;
            hak_ss_release_slab(slab);
        }
    }
    return hak_ss_trim();
}

void hak_small_lock_all(void)
{
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        pthread_mutex_lock(&centrals[c].lock);
    hak_ss_lock();
}

void hak_small_unlock_all(void)
{
    hak_ss_unlock();
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        pthread_mutex_unlock(&centrals[c].lock);
}

void hak_small_reset_after_fork(void)
{
    hak_ss_reset_lock();
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        pthread_mutex_init(&centrals[c].lock, NULL);
}
