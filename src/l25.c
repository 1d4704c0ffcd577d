/* The L25 pool: 32 KiB < size <= 1 MiB.
 *
 * A request is served as a span of its length in whole pages, from 2 MiB
 * chunks aligned on 2 MiB. Size classes (four per doubling: 40, 48, 56,
 * 64, 80, ... 1024 KiB) index the thread caches, size the pool's growth
 * and the cache's extra blocks, and give realloc its room to grow; a
 * cached span serves a request it exceeds by at most an eighth, or any
 * request of its class if it has the class's full size. A chunk's first
 * pages hold one record per page; a span's first and last records carry
 * its length (boundary tags), so a freed span merges with free neighbours
 * at once, and free spans of any size serve any class. The SuperSlab byte
 * map marks L25 chunks (HAK_MAP_L25), so free finds the chunk from any
 * block in O(1) with no per-block header and no hash lookup.
 *
 * Why spans and not runs of one class (the design brief's runs): measured
 * on bench mixed_l25 (random replacement of 32 KiB - 1 MiB blocks), runs
 * of 16 blocks per class unmapped and refaulted whole runs as each class's
 * live count swung: 0.87 s and 325 000 page faults against tcmalloc's
 * 0.12 s; keeping empty runs cut it to 0.36 s but raised peak RSS from 87
 * to 108 MB (tcmalloc 85). Coalescing spans let memory freed by one class
 * serve another, which is what the page-heap allocators do.
 *
 * A thread keeps a few freed blocks in a TLS cache bounded by
 * HAKMEM_WMAX_LARGE bytes (and 16 blocks), filled in bundles of
 * HAKMEM_L25_MIN_BUNDLE; the rest go back to the chunks under the pool
 * lock. Free pages stay resident until they have been idle for
 * HAKMEM_TINY_DECAY_MS, or until the free-but-resident bytes pass 2 MiB
 * plus 1.5x the pool's live bytes (dirty_max()): then they are purged with
 * MADV_DONTNEED (like every tier: the RSS a tool reads in /proc is then
 * what the probes report). A chunk is unmapped once it has been empty for
 * the decay time (unmapping at once cost 531 munmaps and as many refaulted
 * chunks on mixed_l25), or at malloc_trim.
 *
 * HAKMEM_L25_RUN_BLOCKS, _RUN_FACTOR and _DZ set how much the pool maps
 * when it grows: a class in the first size zone (<= 64 KiB) maps room for
 * RUN_BLOCKS blocks, each later zone RUN_FACTOR times fewer, in whole
 * chunks. HAKMEM_CAP_LARGE caps the blocks out of the pool (live or in a
 * thread cache); past it, and with 0, the Large tier serves. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "l25.h"
#include "observe.h"
#include "probes.h"
#include "superslab.h"

#define L25_MAGIC 0x48414b4d4c323563ull /* "HAKML25c" */
#define CHUNK_PAGES (HAK_SS_SIZE / HAK_PAGE)
#define TC_SLOTS 16
#define MAX_CHUNKS_PER_GROW 8

enum span_state { SPAN_NONE = 0, SPAN_FREE = 1, SPAN_LIVE = 2, SPAN_CACHED = 3 };

/* One per page of a chunk. A span's first record holds its state and, when
 * free, its bin links and free time; its first and last records hold its
 * length. Records of other pages are stale: start_bits says which pages
 * start a span. */
struct page_rec {
    struct page_rec *next, *prev; /* free span: its bin's list */
    uint32_t freed_ms;            /* free span: when it was freed */
    uint16_t len;                 /* first and last page of a span */
    uint8_t state;                /* enum span_state, at a span's first page */
    uint8_t sampled;              /* a live span: a sampled allocation (observe.c) */
};

#define CHUNK_WORDS (CHUNK_PAGES / 64)

/* Bitmaps rather than per-page flags: taking or merging a span of up to 256
 * pages touches a few words, not a record per page (bench mixed_l25 spent
 * more time walking page records than tcmalloc spends per operation). */
struct l25_chunk {
    uint64_t magic;
    struct l25_chunk *next, *prev; /* every chunk */
    uint32_t empty_ms;             /* when it last became empty */
    uint32_t is_empty;
    uint32_t purged_count;             /* pages of purged_bits set */
    uint64_t purged_bits[CHUNK_WORDS]; /* page not resident (free and purged, or never touched) */
    uint64_t start_bits[CHUNK_WORDS];  /* page starts a span */
    struct page_rec page[CHUNK_PAGES];
};

/* Bits first .. first + n - 1 of a chunk bitmap. */
static uint32_t bits_count(const uint64_t *bits, uint32_t first, uint32_t n)
{
    uint32_t count = 0;
    while (n) {
        uint32_t w = first / 64, b = first % 64, take = 64 - b < n ? 64 - b : n;
        uint64_t mask = (take == 64 ? ~0ull : ((1ull << take) - 1)) << b;
        count += (uint32_t)__builtin_popcountll(bits[w] & mask);
        first += take;
        n -= take;
    }
    return count;
}

static void bits_assign(uint64_t *bits, uint32_t first, uint32_t n, bool on)
{
    while (n) {
        uint32_t w = first / 64, b = first % 64, take = 64 - b < n ? 64 - b : n;
        uint64_t mask = (take == 64 ? ~0ull : ((1ull << take) - 1)) << b;
        bits[w] = on ? bits[w] | mask : bits[w] & ~mask;
        first += take;
        n -= take;
    }
}

static bool bit_test(const uint64_t *bits, uint32_t i)
{
    return (bits[i / 64] >> (i % 64)) & 1;
}

/* start_bits are read without the pool lock (free, malloc_usable_size)
 * while the lock holder edits other bits of the same word: relaxed atomic
 * loads and stores (the writers hold the lock, so no read-modify-write is
 * lost). A span's own bit does not change while its block is out. */
static bool start_test(const struct l25_chunk *chunk, uint32_t i)
{
    return (__atomic_load_n(&chunk->start_bits[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1;
}

static void start_assign(struct l25_chunk *chunk, uint32_t i, bool on)
{
    uint64_t *w = &chunk->start_bits[i / 64];
    uint64_t bit = 1ull << (i % 64), old = __atomic_load_n(w, __ATOMIC_RELAXED);
    __atomic_store_n(w, on ? old | bit : old & ~bit, __ATOMIC_RELAXED);
}

#define HEADER_PAGES ((sizeof(struct l25_chunk) + HAK_PAGE - 1) / HAK_PAGE)
#define USABLE_PAGES (CHUNK_PAGES - HEADER_PAGES)

/* A thread's cache of freed blocks, any class: at most TC_SLOTS blocks and
 * HAKMEM_WMAX_LARGE bytes, oldest first. */
struct l25_tcache {
    void *block[TC_SLOTS];
    uint8_t cls[TC_SLOTS];
    uint16_t pages[TC_SLOTS]; /* the span's length */
    uint32_t count;
    size_t bytes;
    bool exited;
    bool registered;
    uint8_t last_miss;              /* class + 1 of the last cache miss, 0 none */
    struct l25_tcache *next, *prev; /* every thread's cache (fork child flush) */
    _Atomic uint8_t *busy;          /* its thread's l25_busy */
    struct hak_idle_gate gate;      /* passed by l25_enter (hak_l25_reclaim_idle) */
    /* Blocks per class, and a bit per class holding any: a miss, most
     * allocations with a random mix of classes, skips the scan of the
     * slots (bench mixed_l25: 48 instructions an operation). */
    uint8_t held[HAK_L25_CLASSES];
    uint32_t held_mask;
};

static HAK_TLS struct l25_tcache l25_tc;
/* Set while the thread is inside the pool (its cache or lock): a malloc
 * re-entering from a signal handler goes to the Large tier, a free waits
 * on `deferred` (linked through the blocks) until the next pool call. */
static HAK_TLS _Atomic uint8_t l25_busy;
/* Pool calls of the thread: the cross-tier maintenance (two clock reads)
 * runs on every MAINTAIN_EVERY-th. */
static HAK_TLS uint32_t l25_calls;
#define MAINTAIN_EVERY 16
static HAK_TLS void *deferred;

/* The pool lock: a spinlock, not a pthread mutex. Its sections are short
 * (a bin lookup, a split or merge of spans; a chunk mmap at most), and
 * taking it is on the path of most L25 calls: bench mixed_l25 (scale 1,
 * 7 interleaved runs) took 0.358 s median with the mutex, whose unlock is
 * a second atomic instruction, and 0.332 s with this (tcmalloc 0.335).
 * A waiter that spins past SPIN_TRIES yields the CPU, then naps
 * (hak_backoff), so a holder that was preempted, even by a waiter of a
 * higher real-time priority, gets it back. */
static _Atomic uint32_t l25_lock;
#define SPIN_TRIES 128

static HAK_NOINLINE void l25_lock_contended(void)
{
    for (unsigned round = 0;; round++) {
        for (int i = 0; i < SPIN_TRIES; i++) {
            if (!atomic_load_explicit(&l25_lock, memory_order_relaxed) &&
                !atomic_exchange_explicit(&l25_lock, 1, memory_order_acquire))
                return;
            __builtin_ia32_pause();
        }
        hak_backoff(round);
    }
}

static inline void l25_lock_take(void)
{
    if (HAK_UNLIKELY(atomic_exchange_explicit(&l25_lock, 1, memory_order_acquire)))
        l25_lock_contended();
}

static inline void l25_lock_drop(void)
{
    atomic_store_explicit(&l25_lock, 0, memory_order_release);
}
/* Free spans by length in pages; bin_mask bit n: bins[n] is not empty. */
static struct page_rec *bins[CHUNK_PAGES];
static uint64_t bin_mask[CHUNK_PAGES / 64];
static struct l25_chunk *chunks;
static struct l25_tcache *tcaches;
static uint32_t class_size[HAK_L25_CLASSES];
static uint32_t class_grow_blocks[HAK_L25_CLASSES];
static size_t wmax_bytes;
static uint32_t min_bundle;
static uint32_t decay_ms;
static long long cap_blocks = -1; /* -1: unlimited */
static size_t mapped_chunks;
static size_t empty_chunks;
static size_t live_bytes;  /* live or thread-cached */
static size_t live_blocks; /* what HAKMEM_CAP_LARGE caps */
static size_t dirty_bytes; /* free and resident */
/* Trips to the pool for blocks: counted under the lock and published
 * with the others, not with a locked add of their own. */
static uint64_t refills;
static _Atomic uint32_t last_tick_ms;
static bool enabled;

unsigned hak_l25_class_of(size_t size)
{
    size_t s = size - 1;
    unsigned msb = 63u - (unsigned)__builtin_clzll(s); /* 15 .. 19 */
    unsigned quarter = (unsigned)(s >> (msb - 2)) & 3u;
    return (msb - 15) * 4 + quarter;
}

size_t hak_l25_class_size(unsigned class_index)
{
    return class_size[class_index];
}

void hak_l25_init(void)
{
    for (unsigned c = 0; c < HAK_L25_CLASSES; c++) {
        unsigned msb = 15 + c / 4;
        class_size[c] = (uint32_t)(((size_t)1 << msb) + ((size_t)(c % 4 + 1) << (msb - 2)));
    }
    const long long *zones;
    int nzones = hak_cfg_list(HAK_CFG_L25_DZ, &zones);
    long long run_blocks = hak_cfg_int(HAK_CFG_L25_RUN_BLOCKS);
    long long factor = hak_cfg_int(HAK_CFG_L25_RUN_FACTOR);
    for (unsigned c = 0; c < HAK_L25_CLASSES; c++) {
        long long blocks = run_blocks;
        for (int z = 0; z < nzones; z++)
            if ((long long)class_size[c] > zones[z] * 1024)
                blocks /= factor;
        class_grow_blocks[c] = blocks < 1 ? 1 : (uint32_t)blocks;
    }
    wmax_bytes = (size_t)hak_cfg_int(HAK_CFG_WMAX_LARGE);
    min_bundle = (uint32_t)hak_cfg_int(HAK_CFG_L25_MIN_BUNDLE);
    decay_ms = hak_cfg_int(HAK_CFG_TINY_MEM_DIET) ? 0 : (uint32_t)hak_cfg_int(HAK_CFG_TINY_DECAY_MS);
    if (hak_cfg_is_set(HAK_CFG_CAP_LARGE))
        cap_blocks = hak_cfg_int(HAK_CFG_CAP_LARGE);
    enabled = cap_blocks != 0;
}

static struct l25_chunk *chunk_of(const void *p)
{
    return (struct l25_chunk *)((uintptr_t)p & ~(uintptr_t)(HAK_SS_SIZE - 1));
}

static uint32_t rec_index(const struct page_rec *rec)
{
    return (uint32_t)(rec - chunk_of(rec)->page);
}

static char *rec_addr(const struct page_rec *rec)
{
    return (char *)chunk_of(rec) + (size_t)rec_index(rec) * HAK_PAGE;
}

/* The record of the span starting at p, or NULL when p does not start one. */
static struct page_rec *span_of(const void *p)
{
    struct l25_chunk *chunk = chunk_of(p);
    uintptr_t off = (uintptr_t)p - (uintptr_t)chunk;
    if (chunk->magic != L25_MAGIC || off % HAK_PAGE || off / HAK_PAGE < HEADER_PAGES)
        return NULL;
    return start_test(chunk, (uint32_t)(off / HAK_PAGE)) ? &chunk->page[off / HAK_PAGE] : NULL;
}

static uint8_t span_state(const struct page_rec *rec)
{
    return __atomic_load_n(&rec->state, __ATOMIC_RELAXED);
}

/* Relaxed atomic: hakmem_owns() reads a span's state from any thread. */
static void set_span_state(struct page_rec *rec, uint8_t state)
{
    __atomic_store_n(&rec->state, state, __ATOMIC_RELAXED);
}

static void bin_push(struct page_rec *rec)
{
    unsigned n = rec->len;
    rec->prev = NULL;
    rec->next = bins[n];
    if (bins[n])
        bins[n]->prev = rec;
    bins[n] = rec;
    bin_mask[n / 64] |= 1ull << (n % 64);
}

static void bin_remove(struct page_rec *rec)
{
    unsigned n = rec->len;
    if (rec->prev)
        rec->prev->next = rec->next;
    else
        bins[n] = rec->next;
    if (rec->next)
        rec->next->prev = rec->prev;
    if (!bins[n])
        bin_mask[n / 64] &= ~(1ull << (n % 64));
    rec->next = rec->prev = NULL;
}

/* The first non-empty bin of spans of at least `pages` pages, or
 * CHUNK_PAGES: the walks over the free spans visit only these (a walk of
 * every bin per purge cost bench mixed_l25 37 instructions an operation). */
static unsigned bin_next(unsigned pages)
{
    for (unsigned w = pages / 64; w < CHUNK_PAGES / 64; w++) {
        uint64_t m = bin_mask[w];
        if (w == pages / 64)
            m &= ~0ull << (pages % 64);
        if (m)
            return w * 64 + (unsigned)__builtin_ctzll(m);
    }
    return CHUNK_PAGES;
}

/* The smallest non-empty bin holding spans of at least `pages`. */
static struct page_rec *bin_find(unsigned pages)
{
    unsigned n = bin_next(pages);
    return n < CHUNK_PAGES ? bins[n] : NULL;
}

static void set_span(struct l25_chunk *chunk, uint32_t first, uint32_t len, uint8_t state)
{
    start_assign(chunk, first, true);
    chunk->page[first].len = (uint16_t)len;
    chunk->page[first + len - 1].len = (uint16_t)len;
    set_span_state(&chunk->page[first], state);
}

static void chunk_set_empty(struct l25_chunk *chunk, bool empty, uint32_t now)
{
    if (chunk->is_empty == empty)
        return;
    chunk->is_empty = empty;
    if (empty) {
        empty_chunks++;
        chunk->empty_ms = now;
    } else {
        empty_chunks--;
    }
}

static void unmap_chunk(struct l25_chunk *chunk, int reason)
{
    struct page_rec *span = &chunk->page[HEADER_PAGES];
    bin_remove(span);
    size_t purged_pages = chunk->purged_count;
    size_t resident = (USABLE_PAGES - purged_pages) * HAK_PAGE;
    dirty_bytes -= resident;
    /* The unmap covers the purged pages too: count them back first, so
     * that mapped - unmapped - purged + reused stays the resident size. */
    hak_os_unpurge(rec_addr(span), purged_pages * HAK_PAGE, HAK_PT_L25);
    if (chunk->prev)
        chunk->prev->next = chunk->next;
    else
        chunks = chunk->next;
    if (chunk->next)
        chunk->next->prev = chunk->prev;
    hak_ss_map[(uintptr_t)chunk >> HAK_SS_SHIFT] = 0;
    __atomic_store_n(&mapped_chunks, mapped_chunks - 1, __ATOMIC_RELAXED); /* read unlocked by hak_l25_decay */
    empty_chunks--;
    HAK_PROBE(l25_chunk_unmap, chunk, resident, reason);
    hak_os_unmap(chunk, HAK_SS_SIZE, HAK_PT_L25);
}

/* Under l25_lock: map room for the class's growth step. */
static bool grow(unsigned c, int *reason)
{
    size_t bytes = (size_t)class_grow_blocks[c] * class_size[c];
    size_t count = (bytes + USABLE_PAGES * HAK_PAGE - 1) / (USABLE_PAGES * HAK_PAGE);
    if (count > MAX_CHUNKS_PER_GROW)
        count = MAX_CHUNKS_PER_GROW;
    char *base = hak_os_map_aligned(count * HAK_SS_SIZE, HAK_SS_SIZE, HAK_PT_L25);
    if (!base) {
        *reason = HAK_FALLBACK_MMAP;
        return false;
    }
    uint32_t now = (uint32_t)hak_now_ms();
    for (size_t k = 0; k < count; k++) {
        struct l25_chunk *chunk = (struct l25_chunk *)(base + k * HAK_SS_SIZE);
        chunk->magic = L25_MAGIC;
        /* Untouched pages count as purged: taking them is reported as
         * reuse, so the probes' resident size counts no untouched page. */
        bits_assign(chunk->purged_bits, HEADER_PAGES, USABLE_PAGES, true);
        chunk->purged_count = USABLE_PAGES;
        hak_os_purge_accounting(&chunk->page[HEADER_PAGES], USABLE_PAGES * HAK_PAGE, HAK_PT_L25);
        set_span(chunk, HEADER_PAGES, USABLE_PAGES, SPAN_FREE);
        chunk->page[HEADER_PAGES].freed_ms = now;
        bin_push(&chunk->page[HEADER_PAGES]);
        chunk->next = chunks;
        if (chunks)
            chunks->prev = chunk;
        chunks = chunk;
        __atomic_store_n(&mapped_chunks, mapped_chunks + 1, __ATOMIC_RELAXED);
        chunk->is_empty = 0;
        chunk_set_empty(chunk, true, now);
        hak_ss_map[(uintptr_t)chunk >> HAK_SS_SHIFT] = HAK_MAP_L25;
        HAK_PROBE(l25_chunk_map, chunk, c, class_size[c]);
    }
    return true;
}

/* Under l25_lock: a span of `pages` pages, split from the best-fitting
 * free span (the most recently freed of its length: likely resident). */
static struct page_rec *take_span(unsigned c, uint32_t pages, int *reason)
{
    if (cap_blocks >= 0 && live_blocks >= (size_t)cap_blocks) {
        *reason = HAK_FALLBACK_CAP;
        return NULL;
    }
    struct page_rec *rec = bin_find(pages);
    if (!rec) {
        if (!grow(c, reason))
            return NULL;
        rec = bin_find(pages);
    }
    bin_remove(rec);
    struct l25_chunk *chunk = chunk_of(rec);
    uint32_t first = rec_index(rec), len = rec->len;
    if (len == USABLE_PAGES)
        chunk_set_empty(chunk, false, 0);
    if (len > pages) {
        struct page_rec *rest = &chunk->page[first + pages];
        set_span(chunk, first + pages, len - pages, SPAN_FREE);
        rest->freed_ms = rec->freed_ms;
        bin_push(rest);
    }
    set_span(chunk, first, pages, SPAN_LIVE);
    /* Purged pages come back (reuse); the others were free and resident. */
    uint32_t purged = chunk->purged_count ? bits_count(chunk->purged_bits, first, pages) : 0;
    if (purged) {
        hak_os_unpurge(rec_addr(rec), (size_t)purged * HAK_PAGE, HAK_PT_L25);
        bits_assign(chunk->purged_bits, first, pages, false);
        chunk->purged_count -= purged;
    }
    dirty_bytes -= (size_t)(pages - purged) * HAK_PAGE;
    live_bytes += (size_t)pages * HAK_PAGE;
    live_blocks++;
    return rec;
}

/* Purge the resident pages of free span `rec`. */
static size_t purge_span(struct page_rec *rec)
{
    struct l25_chunk *chunk = chunk_of(rec);
    uint32_t first = rec_index(rec), end = first + rec->len;
    size_t purged = 0;
    if (bits_count(chunk->purged_bits, first, end - first) == end - first)
        return 0;
    for (uint32_t i = first; i < end;) {
        if (bit_test(chunk->purged_bits, i)) {
            i++;
            continue;
        }
        uint32_t j = i;
        while (j < end && !bit_test(chunk->purged_bits, j))
            j++;
        bits_assign(chunk->purged_bits, i, j - i, true);
        chunk->purged_count += j - i;
        hak_os_purge((char *)chunk + (size_t)i * HAK_PAGE, (size_t)(j - i) * HAK_PAGE, HAK_PT_L25);
        purged += (size_t)(j - i) * HAK_PAGE;
        i = j;
    }
    dirty_bytes -= purged;
    return purged;
}

/* Under l25_lock: give a live or cached span back, merging it with free
 * neighbours. */
static void give_span(struct page_rec *rec, uint32_t now)
{
    struct l25_chunk *chunk = chunk_of(rec);
    uint32_t first = rec_index(rec), len = rec->len;
    live_bytes -= (size_t)len * HAK_PAGE;
    live_blocks--;
    dirty_bytes += (size_t)len * HAK_PAGE;
    if (first > HEADER_PAGES) {
        uint32_t left = first - chunk->page[first - 1].len;
        if (span_state(&chunk->page[left]) == SPAN_FREE) {
            bin_remove(&chunk->page[left]);
            set_span_state(&chunk->page[first], SPAN_NONE);
            start_assign(chunk, first, false);
            len += first - left;
            first = left;
        }
    }
    if (first + len < CHUNK_PAGES && span_state(&chunk->page[first + len]) == SPAN_FREE) {
        struct page_rec *right = &chunk->page[first + len];
        bin_remove(right);
        set_span_state(right, SPAN_NONE);
        start_assign(chunk, first + len, false);
        len += right->len;
    }
    set_span(chunk, first, len, SPAN_FREE);
    chunk->page[first].freed_ms = now;
    bin_push(&chunk->page[first]);
    if (len == USABLE_PAGES) {
        chunk_set_empty(chunk, true, now);
    }
}

/* Free-but-resident bytes allowed before the oldest are purged: 2 MiB
 * plus one and a half times the live bytes. Free spans are fragments of
 * many lengths, and a request can only use one long enough; measured on
 * bench mixed_l25 (36 MiB live, random 32 KiB - 1 MiB): an allowance of
 * live/8 purged and refaulted 2.1 million pages (5.1 s), live/2 254 000
 * (0.64 s), live 13 000 more than the 16 000 faults of its first fill
 * (its free spans settle just above the live bytes), live * 1.5 none, at
 * the same peak and end RSS (65.9 MB; tcmalloc 92, mimalloc 75, glibc 59)
 * and 10 % less time. The rest goes after HAKMEM_TINY_DECAY_MS, or at
 * malloc_trim. */
static size_t dirty_max(void)
{
    return 2 * HAK_MiB + live_bytes + live_bytes / 2;
}

/* Over the allowance: purge the spans freed longest ago (ages halving
 * from the decay time) down to 3/4 of it, so the next frees do not purge
 * again. Largest-first thrashed: it purged the very spans the next large
 * requests took (bench mixed_l25: 2.1 million page faults against 17 000). */
static size_t purge_to_allowance(uint32_t now)
{
    size_t purged = 0, target = dirty_max() / 4 * 3;
    for (uint32_t age = decay_ms / 2;; age /= 2) {
        for (unsigned n = bin_next(1); n < CHUNK_PAGES && dirty_bytes > target; n = bin_next(n + 1))
            for (struct page_rec *rec = bins[n]; rec && dirty_bytes > target; rec = rec->next)
                if (now - rec->freed_ms >= age)
                    purged += purge_span(rec);
        if (dirty_bytes <= target || age == 0)
            return purged;
    }
}

/* Purge free spans idle past the decay time (every one with `all`) and
 * unmap chunks empty past it. */
static void decay_locked(uint32_t now, bool all)
{
    size_t purged = 0;
    for (struct l25_chunk *chunk = chunks, *next; chunk; chunk = next) {
        next = chunk->next;
        if (chunk->is_empty && (all || now - chunk->empty_ms >= decay_ms)) {
            purged += (size_t)(USABLE_PAGES - chunk->purged_count) * HAK_PAGE;
            unmap_chunk(chunk, all ? HAK_UNMAP_TRIM : HAK_UNMAP_DECAY);
        }
    }
    for (unsigned n = bin_next(1); n < CHUNK_PAGES && dirty_bytes; n = bin_next(n + 1))
        for (struct page_rec *rec = bins[n]; rec && dirty_bytes; rec = rec->next)
            if (all || now - rec->freed_ms >= decay_ms)
                purged += purge_span(rec);
    if (dirty_bytes > dirty_max())
        purged += purge_to_allowance(now);
    if (purged) {
        HAK_COUNT(decay_purged_bytes, purged);
        HAK_PROBE(decay_tick, HAK_PT_L25, purged, dirty_bytes);
    }
}

static void maybe_tick(uint32_t now)
{
    if (dirty_bytes > dirty_max()) {
        size_t purged = purge_to_allowance(now);
        HAK_COUNT(decay_purged_bytes, purged);
        HAK_PROBE(decay_tick, HAK_PT_L25, purged, dirty_bytes);
    }
    uint32_t last = atomic_load_explicit(&last_tick_ms, memory_order_relaxed);
    if (now - last < 50 || !atomic_compare_exchange_strong(&last_tick_ms, &last, now))
        return;
    decay_locked(now, false);
}

/* Under l25_lock, before unlocking: the counters hakmem_stats reads. */
static void publish_stats(void)
{
    atomic_store_explicit(&hak_counters.l25_live_bytes, live_bytes, memory_order_relaxed);
    atomic_store_explicit(&hak_counters.l25_free_resident, dirty_bytes, memory_order_relaxed);
    atomic_store_explicit(&hak_counters.l25_chunks, mapped_chunks, memory_order_relaxed);
    atomic_store_explicit(&hak_counters.l25_refills, refills, memory_order_relaxed);
}

static bool l25_busy_now(void)
{
    return atomic_load_explicit(&l25_busy, memory_order_relaxed) != 0;
}

static void l25_leave(void)
{
    hak_gate_leave(&l25_busy);
}

/* Entering a pool call, through the cache's idle gate (hak_l25_reclaim_idle). */
static void l25_enter(void)
{
    hak_gate_enter(&l25_busy, &l25_tc.gate);
}

static void tcache_register(struct l25_tcache *tc)
{
    tc->registered = true;
    tc->busy = &l25_busy;
    tc->next = tcaches;
    tc->prev = NULL;
    if (tcaches)
        tcaches->prev = tc;
    tcaches = tc;
}

static void tcache_unregister(struct l25_tcache *tc)
{
    if (!tc->registered)
        return;
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        tcaches = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    tc->registered = false;
}

static void tc_hold(struct l25_tcache *tc, void *p, uint32_t pages)
{
    unsigned c = hak_l25_class_of((size_t)pages * HAK_PAGE);
    tc->block[tc->count] = p;
    tc->pages[tc->count] = (uint16_t)pages;
    tc->cls[tc->count++] = (uint8_t)c;
    tc->bytes += (size_t)pages * HAK_PAGE;
    tc->held[c]++;
    tc->held_mask |= 1u << c;
}

/* Slot k leaves the cache. */
static void tc_unhold(struct l25_tcache *tc, uint32_t k)
{
    unsigned c = tc->cls[k];
    tc->bytes -= (size_t)tc->pages[k] * HAK_PAGE;
    if (--tc->held[c] == 0)
        tc->held_mask &= ~(1u << c);
}

/* Slots first .. first + n - 1 leave, the later ones move down: at most
 * TC_SLOTS, a loop rather than three calls to memmove. */
static void tc_remove(struct l25_tcache *tc, uint32_t first, uint32_t n)
{
    for (uint32_t k = first; k + n < tc->count; k++) {
        tc->block[k] = tc->block[k + n];
        tc->cls[k] = tc->cls[k + n];
        tc->pages[k] = tc->pages[k + n];
    }
    tc->count -= n;
}

/* Under l25_lock: the oldest `n` cached blocks go back to the chunks. */
static void tcache_spill_locked(struct l25_tcache *tc, uint32_t n, uint32_t now)
{
    for (uint32_t k = 0; k < n; k++) {
        give_span(span_of(tc->block[k]), now);
        tc_unhold(tc, k);
    }
    tc_remove(tc, 0, n);
}

static void l25_free_locked_out(void *p);

static void drain_deferred(void)
{
    while (deferred) {
        void *p = deferred;
        deferred = *(void **)p;
        l25_free_locked_out(p);
    }
}

static void *l25_alloc(size_t size);

bool hak_l25_busy(void)
{
    return l25_busy_now();
}

void *hak_l25_alloc(size_t size)
{
    if (l25_busy_now()) {
        HAK_COUNT(l25_fallbacks, 1);
        HAK_PROBE(pool_fallback, HAK_PT_L25, HAK_FALLBACK_REENTRANT, size, HAK_PT_LARGE);
        return NULL;
    }
    l25_enter();
    if (HAK_UNLIKELY(deferred != NULL))
        drain_deferred();
    uint64_t t0 = hak_timing_start();
    void *p = l25_alloc(size);
    hak_timing_stop(HAK_TIME_L25, t0);
    uint64_t weight;
    if (p && HAK_UNLIKELY(hak_sampling_active()) && (weight = hak_sample_charge(size)) != 0) {
        struct page_rec *rec = span_of(p);
        rec->sampled = 1;
        /* A live span's freed_ms is unused: it keeps the weight (KiB). */
        rec->freed_ms = (uint32_t)(weight >> 10 ? weight >> 10 : 1);
        hak_sample_alloc(p, (size_t)rec->len * HAK_PAGE, (uint64_t)rec->freed_ms << 10, HAK_PT_L25);
    }
    l25_leave();
    if (p && ++l25_calls % MAINTAIN_EVERY == 0)
        hak_maintenance();
    return p;
}

static void *l25_alloc(size_t size)
{
    if (!enabled) {
        HAK_COUNT(l25_fallbacks, 1);
        HAK_PROBE(pool_fallback, HAK_PT_L25, HAK_FALLBACK_DISABLED, size, HAK_PT_LARGE);
        return NULL;
    }
    unsigned c = hak_l25_class_of(size);
    uint32_t need = (uint32_t)((size + HAK_PAGE - 1) / HAK_PAGE);
    /* A cached span serves a request it exceeds by at most an eighth of the
     * request (such spans are of the class or the next), and one of its
     * class's full size (the cache's extra blocks, realloc's) any request
     * of the class. Any span within the class, up to a quarter over,
     * wasted as much as class rounding did: bench frag_stress, whose L25
     * blocks mostly come from the cache, kept 22.4 MB of L25 blocks for
     * 20.8 MB asked for, 21.5 MB with an eighth; mixed_l25's time did not
     * move. */
    uint32_t class_pages = class_size[c] / HAK_PAGE;
    struct l25_tcache *tc = &l25_tc;
    for (uint32_t k = tc->held_mask >> c & 3 ? tc->count : 0; k-- > 0;) {
        uint32_t len = tc->pages[k];
        if (tc->cls[k] - c > 1 || len < need || (len > need + need / 8 && len != class_pages))
            continue;
        void *p = tc->block[k];
        set_span_state(span_of(p), SPAN_LIVE);
        tc_unhold(tc, k);
        tc_remove(tc, k, 1);
        return p;
    }
    /* A bundle: the block asked for plus what fits the thread's cache. */
    /* A bundle only for a class that missed twice in a row: the extra
     * blocks take cache room that freed blocks would otherwise use, so
     * for a random mix of classes they only push those out (bench
     * mixed_l25, callgrind: 43.9 M instructions with bundles of 4 on
     * every miss, 35.9 M with none). */
    uint32_t want = 1;
    bool streak = tc->last_miss == c + 1;
    tc->last_miss = (uint8_t)(c + 1);
    if (!tc->exited && min_bundle > 1 && streak) {
        size_t room = wmax_bytes > tc->bytes ? (wmax_bytes - tc->bytes) / class_size[c] : 0;
        uint32_t extra = min_bundle - 1;
        if (extra > room)
            extra = (uint32_t)room;
        if (extra > TC_SLOTS - tc->count)
            extra = TC_SLOTS - tc->count;
        want += extra;
    }
    if (want > 1 && !tc->registered)
        hak_thread_register(); /* its exit flushes the cache */
    int reason = HAK_FALLBACK_MMAP;
    /* The block asked for has its length in pages, not its class's size:
     * bench frag_stress, 32-256 KiB blocks: class rounding left 5 % of the
     * L25 bytes unused. Extra blocks for the cache have the class's size,
     * which serves any request of it. */
    uint32_t pages = need;
    void *got[TC_SLOTS];
    uint32_t n = 0;
    /* No clock read and no tick here: taking spans only lowers the free
     * bytes, and the ticks come with frees and with the maintenance every
     * MAINTAIN_EVERY calls (bench mixed_l25: 25 instructions an
     * allocation). */
    l25_lock_take();
    for (; n < want; n++) {
        struct page_rec *rec = take_span(c, pages, &reason);
        if (!rec)
            break;
        if (n)
            set_span_state(rec, SPAN_CACHED);
        pages = class_pages;
        got[n] = rec_addr(rec);
    }
    if (n > 1 && !tc->registered)
        tcache_register(tc);
    if (n)
        refills++;
    publish_stats();
    l25_lock_drop();
    if (n == 0) {
        HAK_COUNT(l25_fallbacks, 1);
        HAK_PROBE(pool_fallback, HAK_PT_L25, reason, size, HAK_PT_LARGE);
        return NULL;
    }
    for (uint32_t k = 1; k < n; k++)
        tc_hold(tc, got[k], class_pages);
    hak_hist(HAK_PT_L25, (size_t)need * HAK_PAGE, n);
    HAK_PROBE(pool_refill, HAK_PT_L25, c, n, HAK_REFILL_PARTIAL);
    return got[0];
}

void hak_l25_free(void *p)
{
    if (l25_busy_now()) {
        *(void **)p = deferred;
        deferred = p;
        return;
    }
    l25_enter();
    if (HAK_UNLIKELY(deferred != NULL))
        drain_deferred();
    l25_free_locked_out(p);
    l25_leave();
    if (++l25_calls % MAINTAIN_EVERY == 0)
        hak_maintenance();
}

static void l25_free_locked_out(void *p)
{
    struct page_rec *rec = span_of(p);
    if (!rec || span_state(rec) != SPAN_LIVE) {
        hak_report_misuse("free(): pointer not allocated by hakmem, or freed twice", p);
        return;
    }
    if (HAK_UNLIKELY(rec->sampled)) {
        rec->sampled = 0;
        hak_sample_free(p, (size_t)rec->len * HAK_PAGE, (uint64_t)rec->freed_ms << 10, HAK_PT_L25);
    }
    struct l25_tcache *tc = &l25_tc;
    size_t bytes = (size_t)rec->len * HAK_PAGE;
    if (!tc->exited && bytes <= wmax_bytes) {
        set_span_state(rec, SPAN_CACHED);
        uint32_t spill = 0;
        size_t cached = tc->bytes + bytes;
        while (spill < tc->count && (tc->count - spill >= TC_SLOTS || cached > wmax_bytes))
            cached -= (size_t)tc->pages[spill++] * HAK_PAGE;
        if (spill || !tc->registered) {
            if (!tc->registered)
                hak_thread_register(); /* its exit flushes the cache */
            l25_lock_take();
            uint32_t now = (uint32_t)hak_now_ms();
            if (!tc->registered)
                tcache_register(tc);
            if (spill) {
                HAK_PROBE(pool_spill, HAK_PT_L25, tc->cls[0], spill, HAK_SPILL_SLABS);
                tcache_spill_locked(tc, spill, now);
                maybe_tick(now);
            }
            publish_stats();
            l25_lock_drop();
        }
        tc_hold(tc, p, rec->len);
        return;
    }
    l25_lock_take();
    uint32_t now = (uint32_t)hak_now_ms();
    give_span(rec, now);
    maybe_tick(now);
    publish_stats();
    l25_lock_drop();
}

size_t hak_l25_usable(const void *p)
{
    struct page_rec *rec = span_of(p);
    return rec && span_state(rec) == SPAN_LIVE ? (size_t)rec->len * HAK_PAGE : 0;
}

/* realloc: the live block at p grows in place, into the free span right
 * after it, to its class's size (room for the next appends) or to what
 * that span has, if enough for `size`. A sampled block keeps its length:
 * its sample_free must carry the size of its sample_alloc. */
bool hak_l25_grow(void *p, size_t size)
{
    if (l25_busy_now())
        return false;
    struct page_rec *rec = span_of(p);
    if (!rec || span_state(rec) != SPAN_LIVE || rec->sampled)
        return false;
    uint32_t need = (uint32_t)((size + HAK_PAGE - 1) / HAK_PAGE);
    uint32_t want = class_size[hak_l25_class_of(size)] / HAK_PAGE;
    struct l25_chunk *chunk = chunk_of(rec);
    uint32_t first = rec_index(rec), len = rec->len;
    bool grown = false;
    l25_enter();
    l25_lock_take();
    struct page_rec *right = first + len < CHUNK_PAGES ? &chunk->page[first + len] : NULL;
    if (right && span_state(right) == SPAN_FREE && len + right->len >= need) {
        uint32_t avail = right->len, take = (want < len + avail ? want : len + avail) - len;
        uint32_t freed_ms = right->freed_ms, at = first + len;
        bin_remove(right);
        set_span_state(right, SPAN_NONE);
        start_assign(chunk, at, false);
        if (avail > take) {
            set_span(chunk, at + take, avail - take, SPAN_FREE);
            chunk->page[at + take].freed_ms = freed_ms;
            bin_push(&chunk->page[at + take]);
        }
        uint32_t purged = chunk->purged_count ? bits_count(chunk->purged_bits, at, take) : 0;
        if (purged) {
            hak_os_unpurge((char *)chunk + (size_t)at * HAK_PAGE, (size_t)purged * HAK_PAGE, HAK_PT_L25);
            bits_assign(chunk->purged_bits, at, take, false);
            chunk->purged_count -= purged;
        }
        dirty_bytes -= (size_t)(take - purged) * HAK_PAGE;
        live_bytes += (size_t)take * HAK_PAGE;
        set_span(chunk, first, len + take, SPAN_LIVE);
        grown = true;
    }
    publish_stats();
    l25_lock_drop();
    l25_leave();
    return grown;
}

bool hak_l25_is_live(const void *p)
{
    struct page_rec *rec = span_of(p);
    return rec && span_state(rec) == SPAN_LIVE;
}

/* The calling thread's cache back to the chunks; after `exiting`, its
 * later frees (TLS destructors) go straight to the chunks. */
void hak_l25_thread_flush(bool exiting)
{
    struct l25_tcache *tc = &l25_tc;
    if (l25_busy_now())
        return; /* a signal handler inside the pool: the cache is mid-edit */
    l25_enter();
    if (deferred)
        drain_deferred();
    if (tc->count || tc->registered) {
        l25_lock_take();
        if (tc->count)
            tcache_spill_locked(tc, tc->count, (uint32_t)hak_now_ms());
        if (exiting)
            tcache_unregister(tc);
        publish_stats();
        l25_lock_drop();
    }
    if (exiting)
        tc->exited = true;
    l25_leave();
}

void hak_l25_decay(void)
{
    uint32_t now = (uint32_t)hak_now_ms();
    if (l25_busy_now() || !__atomic_load_n(&mapped_chunks, __ATOMIC_RELAXED) ||
        now - atomic_load_explicit(&last_tick_ms, memory_order_relaxed) < 50)
        return;
    l25_enter();
    l25_lock_take();
    maybe_tick((uint32_t)hak_now_ms());
    publish_stats();
    l25_lock_drop();
    l25_leave();
}

/* Decay thread: the cache of a thread that made no pool call since the
 * last tick goes back to the chunks, dated a decay time ago so that the
 * decay pass that follows purges it (with any free neighbour a span merges
 * into, which the allowance would purge oldest-first anyway). A thread
 * keeps up to HAKMEM_WMAX_LARGE bytes there (2 MiB by default). */
void hak_l25_reclaim_idle(void)
{
    struct l25_tcache *idle[64];
    uint32_t n = 0;
    l25_lock_take();
    for (struct l25_tcache *tc = tcaches; tc && n < 64; tc = tc->next)
        if (hak_gate_close_if_quiet(&tc->gate, 0))
            idle[n++] = tc;
    bool fenced = n && hak_membarrier();
    uint32_t now = (uint32_t)hak_now_ms();
    for (uint32_t i = 0; i < n; i++) {
        struct l25_tcache *tc = idle[i];
        bool owned = fenced && hak_gate_owned(tc->busy);
        if (owned && tc->count) {
            HAK_PROBE(pool_spill, HAK_PT_L25, tc->cls[0], tc->count, HAK_SPILL_IDLE);
            tcache_spill_locked(tc, tc->count, now - decay_ms);
        }
        hak_gate_open(&tc->gate, owned);
    }
    publish_stats();
    l25_lock_drop();
}

/* malloc_trim and the RSS budget: the calling thread's cache goes back,
 * every free page is purged and every empty chunk unmapped. */
size_t hak_l25_trim(void)
{
    if (l25_busy_now())
        return 0;
    hak_l25_thread_flush(false);
    l25_enter();
    l25_lock_take();
    size_t before = dirty_bytes;
    decay_locked((uint32_t)hak_now_ms(), true);
    size_t released = before - dirty_bytes;
    publish_stats();
    l25_lock_drop();
    l25_leave();
    return released;
}

/* The RSS budget: every free page purged and every empty chunk unmapped
 * (thread caches left alone). */
void hak_l25_purge_all(void)
{
    if (l25_busy_now())
        return;
    l25_enter();
    l25_lock_take();
    decay_locked((uint32_t)hak_now_ms(), true);
    publish_stats();
    l25_lock_drop();
    l25_leave();
}

void hak_l25_lock_all(void)
{
    l25_lock_take();
}

void hak_l25_unlock_all(void)
{
    l25_lock_drop();
}

/* Fork child, one thread: the caches of the threads that did not survive
 * the fork go back to the chunks (their TLS blocks are still mapped). */
void hak_l25_reset_after_fork(void)
{
    atomic_store_explicit(&l25_lock, 0, memory_order_relaxed);
    uint32_t now = (uint32_t)hak_now_ms();
    for (struct l25_tcache *tc = tcaches, *next; tc; tc = next) {
        next = tc->next;
        if (tc == &l25_tc)
            continue;
        /* A thread forked in the middle of a pool call may have left its
         * cache half edited: its blocks are leaked in the child rather than
         * trusted; the others are checked before going back. */
        if (!*tc->busy) {
            uint32_t kept = 0;
            for (uint32_t k = 0; k < tc->count; k++) {
                struct page_rec *rec = span_of(tc->block[k]);
                if (rec && span_state(rec) == SPAN_CACHED) {
                    tc->block[kept] = tc->block[k];
                    tc->cls[kept] = tc->cls[k];
                    tc->pages[kept] = tc->pages[k];
                    kept++;
                }
            }
            tc->count = kept;
            tcache_spill_locked(tc, tc->count, now);
        }
        tcache_unregister(tc);
    }
}
