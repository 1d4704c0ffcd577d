/* tiny_threads — the Tiny tier across threads: blocks handed from producer
 * threads to consumer threads that check and free them (remote frees), and
 * slabs left by an exiting thread, freed into by another and adopted by a
 * third. tests/test_tiny_threads.py runs it under LD_PRELOAD and, compiled
 * together with hakmem, under ThreadSanitizer.
 *
 * HKTEST_SCALE (percent, default 100) scales the workloads down for the
 * sanitizer run. */
#include "check.h"
#include "hk_api.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static void *map_zeroed(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED, "mmap(%zu) failed: %s", bytes, strerror(errno));
    return p;
}

static long scaled(long n)
{
    long s = env_long("HKTEST_SCALE", 100);
    long v = n * s / 100;
    return v > 0 ? v : 1;
}

/* ---- live-block set ------------------------------------------------------ */

/* Every block the program holds, in a striped hash set (own memory, from
 * mmap): malloc's result must not be in it (no block handed out twice),
 * a block leaves it just before it is freed (so that whoever gets it next
 * can insert it). Linear probing with tombstones; cleared between rounds. */
#define LIVE_STRIPES 64
#define LIVE_SLOTS 8192 /* per stripe */
#define LIVE_TOMB ((uintptr_t)1)

struct live_stripe {
    pthread_mutex_t lock;
    uintptr_t *slot;
    size_t used;
} __attribute__((aligned(64)));

static struct live_stripe live[LIVE_STRIPES];

static void live_init(void)
{
    for (int s = 0; s < LIVE_STRIPES; s++) {
        pthread_mutex_init(&live[s].lock, NULL);
        live[s].slot = map_zeroed(LIVE_SLOTS * sizeof(uintptr_t));
        live[s].used = 0;
    }
}

static void live_clear(void)
{
    for (int s = 0; s < LIVE_STRIPES; s++) {
        memset(live[s].slot, 0, LIVE_SLOTS * sizeof(uintptr_t));
        live[s].used = 0;
    }
}

static uint64_t live_hash(uintptr_t p)
{
    return (uint64_t)(p >> 3) * 0x9E3779B97F4A7C15ull;
}

/* Adds p; 0 when it was there already. */
static int live_insert(const void *ptr)
{
    uintptr_t p = (uintptr_t)ptr;
    uint64_t h = live_hash(p);
    struct live_stripe *st = &live[h >> 58];
    int fresh = 1;
    pthread_mutex_lock(&st->lock);
    REQUIRE(st->used < LIVE_SLOTS * 3 / 4, "live-set stripe full: raise LIVE_SLOTS");
    size_t i = (size_t)(h >> 20) & (LIVE_SLOTS - 1), free_at = (size_t)-1;
    for (;; i = (i + 1) & (LIVE_SLOTS - 1)) {
        if (st->slot[i] == p) {
            fresh = 0;
            break;
        }
        if (st->slot[i] == LIVE_TOMB && free_at == (size_t)-1)
            free_at = i;
        if (st->slot[i] == 0) {
            if (free_at == (size_t)-1) {
                free_at = i;
                st->used++;
            }
            st->slot[free_at] = p;
            break;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return fresh;
}

/* Removes p; 0 when it was not there. */
static int live_remove(const void *ptr)
{
    uintptr_t p = (uintptr_t)ptr;
    uint64_t h = live_hash(p);
    struct live_stripe *st = &live[h >> 58];
    int found = 0;
    pthread_mutex_lock(&st->lock);
    for (size_t i = (size_t)(h >> 20) & (LIVE_SLOTS - 1); st->slot[i] != 0; i = (i + 1) & (LIVE_SLOTS - 1)) {
        if (st->slot[i] == p) {
            st->slot[i] = LIVE_TOMB;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return found;
}

/* ---- producers and consumers ----------------------------------------------- */

struct item {
    unsigned char *p;
    uint32_t size;
    uint64_t seed; /* producer id << 32 | sequence number */
};

#define QUEUE_CAP 512

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct item ring[QUEUE_CAP];
    size_t head, count;
};

enum { PRODUCERS = 3, CONSUMERS = 3 };

static struct queue queues[CONSUMERS];
static atomic_int double_handouts, lost_blocks, bad_contents;
static long per_producer;

static void queue_put(struct queue *q, struct item it)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == QUEUE_CAP)
        pthread_cond_wait(&q->not_full, &q->lock);
    q->ring[(q->head + q->count) % QUEUE_CAP] = it;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

static struct item queue_get(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->not_empty, &q->lock);
    struct item it = q->ring[q->head];
    q->head = (q->head + 1) % QUEUE_CAP;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return it;
}

static void release(unsigned char *p)
{
    if (!live_remove(p)) {
        if (atomic_fetch_add(&lost_blocks, 1) < 5)
            CHECK(0, "block %p freed but not in the live set", (void *)p);
    }
    free(p);
}

static unsigned char *acquire(size_t size)
{
    unsigned char *p = malloc(size);
    REQUIRE(p, "malloc(%zu) failed: %s", size, strerror(errno));
    if (!live_insert(p) && atomic_fetch_add(&double_handouts, 1) < 5)
        CHECK(0, "malloc(%zu) returned %p, which is still live (handed out twice)", size, (void *)p);
    return p;
}

static void *producer(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    uint64_t rng = id * 0x51ED27 + 1;
    enum { KEEP = 16 };
    struct item kept[KEEP];
    int nkept = 0;
    for (long seq = 0; seq < per_producer; seq++) {
        size_t size = 1 + rng_next(&rng) % 1024;
        struct item it = {acquire(size), (uint32_t)size, id << 32 | (uint64_t)seq};
        fill_pattern(it.p, size, it.seed);
        if (seq % 8 == 7) { /* some stay home: freed by their owner */
            if (nkept == KEEP) {
                for (int k = 0; k < KEEP; k++) {
                    long bad = check_pattern(kept[k].p, kept[k].size, kept[k].seed);
                    if (bad >= 0 && atomic_fetch_add(&bad_contents, 1) < 5)
                        CHECK(0, "kept block %p (%u bytes) changed at offset %ld", (void *)kept[k].p, kept[k].size,
                              bad);
                    release(kept[k].p);
                }
                nkept = 0;
            }
            kept[nkept++] = it;
            continue;
        }
        queue_put(&queues[(size_t)(seq + (long)id) % CONSUMERS], it);
    }
    for (int k = 0; k < nkept; k++)
        release(kept[k].p);
    return NULL;
}

static void *consumer(void *arg)
{
    struct queue *q = arg;
    for (;;) {
        struct item it = queue_get(q);
        if (!it.p)
            return NULL;
        long bad = check_pattern(it.p, it.size, it.seed);
        if (bad >= 0 && atomic_fetch_add(&bad_contents, 1) < 5)
            CHECK(0,
                  "block %p (%u bytes) from producer %u, #%u changed at offset %ld before its consumer "
                  "freed it",
                  (void *)it.p, it.size, (unsigned)(it.seed >> 32), (unsigned)it.seed, bad);
        release(it.p);
    }
}

/* Rounds of 3 producers and 3 consumers (new threads each round, so
 * exiting threads' slabs are abandoned and adopted too). */
static void t_remote_free(void)
{
    hk_have_api();
    live_init();
    per_producer = scaled(20000);
    long rounds = 4;
    struct hakmem_stats before = hk_stats();
    for (int c = 0; c < CONSUMERS; c++) {
        pthread_mutex_init(&queues[c].lock, NULL);
        pthread_cond_init(&queues[c].not_empty, NULL);
        pthread_cond_init(&queues[c].not_full, NULL);
    }
    for (long r = 0; r < rounds; r++) {
        pthread_t prod[PRODUCERS], cons[CONSUMERS];
        for (int c = 0; c < CONSUMERS; c++)
            REQUIRE(pthread_create(&cons[c], NULL, consumer, &queues[c]) == 0, "pthread_create failed");
        for (int i = 0; i < PRODUCERS; i++)
            REQUIRE(pthread_create(&prod[i], NULL, producer, (void *)(uintptr_t)(r * PRODUCERS + i + 1)) == 0,
                    "pthread_create failed");
        for (int i = 0; i < PRODUCERS; i++)
            REQUIRE(pthread_join(prod[i], NULL) == 0, "pthread_join failed");
        for (int c = 0; c < CONSUMERS; c++)
            queue_put(&queues[c], (struct item){NULL, 0, 0});
        for (int c = 0; c < CONSUMERS; c++)
            REQUIRE(pthread_join(cons[c], NULL) == 0, "pthread_join failed");
        for (int s = 0; s < LIVE_STRIPES; s++)
            for (size_t i = 0; i < LIVE_SLOTS; i++)
                CHECK(live[s].slot[i] <= LIVE_TOMB,
                      "round %ld: block %#lx still live after every thread freed "
                      "what it got",
                      r, (unsigned long)live[s].slot[i]);
        live_clear();
    }
    struct hakmem_stats after = hk_stats();
    CHECK(atomic_load(&double_handouts) == 0, "%d blocks handed out while live", atomic_load(&double_handouts));
    CHECK(atomic_load(&bad_contents) == 0, "%d blocks changed while live", atomic_load(&bad_contents));
    CHECK(atomic_load(&lost_blocks) == 0, "%d frees of blocks not in the live set", atomic_load(&lost_blocks));
    if (hk_have_api())
        CHECK(after.tiny_remote_drained > before.tiny_remote_drained,
              "tiny_remote_drained did not grow (%llu) over %ld rounds of cross-thread frees",
              (unsigned long long)after.tiny_remote_drained, rounds);
    printf("remote_free rounds=%ld per_producer=%ld remote_drained=%llu adopted=%llu abandoned=%llu\n", rounds,
           per_producer, (unsigned long long)(after.tiny_remote_drained - before.tiny_remote_drained),
           (unsigned long long)(after.tiny_adopted - before.tiny_adopted),
           (unsigned long long)(after.tiny_abandoned - before.tiny_abandoned));
}

/* ---- exit, abandon, adopt ---------------------------------------------------- */

#define ADOPT_SIZE 100 /* the 112-byte class: 585 blocks per 64 KiB slab */

static unsigned char **a_blocks, **b_blocks;
static long a_count, b_count;

static uint64_t a_seed(long i)
{
    return 0xA000000000ull + (uint64_t)i;
}

static uint64_t b_seed(long i)
{
    return 0xB000000000ull + (uint64_t)i;
}

static void *thread_a(void *arg)
{
    (void)arg;
    for (long i = 0; i < a_count; i++) {
        a_blocks[i] = malloc(ADOPT_SIZE);
        REQUIRE(a_blocks[i], "thread A: malloc failed");
        fill_pattern(a_blocks[i], ADOPT_SIZE, a_seed(i));
    }
    return NULL; /* exits with every block live */
}

static void *thread_b(void *arg)
{
    (void)arg;
    for (long i = 0; i < b_count; i++) {
        b_blocks[i] = malloc(ADOPT_SIZE);
        REQUIRE(b_blocks[i], "thread B: malloc failed");
        fill_pattern(b_blocks[i], ADOPT_SIZE, b_seed(i));
    }
    for (long i = 0; i < b_count; i += 4) { /* a few freed by their owner */
        free(b_blocks[i]);
        b_blocks[i] = NULL;
    }
    return NULL; /* exits with the rest live */
}

/* Frees every other block of A's and never allocates: with no heap of its
 * own it cannot adopt A's slabs, so its frees wait on their remote lists. */
static long freer_tid;
static atomic_long freer_bad;
static void *thread_free_half(void *arg)
{
    freer_tid = (long)syscall(SYS_gettid);
    for (long i = 0; i < a_count; i += 2) {
        if (check_pattern(a_blocks[i], ADOPT_SIZE, a_seed(i)) >= 0)
            atomic_fetch_add(&freer_bad, 1);
        free(a_blocks[i]);
        a_blocks[i] = NULL;
    }
    return arg;
}

static void *thread_noop(void *arg)
{
    free(malloc(ADOPT_SIZE));
    return arg;
}

static int cmp_ptr(const void *x, const void *y)
{
    uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
    return a < b ? -1 : a > b;
}

/* Thread A mallocs blocks and exits leaving them live (its slabs are
 * abandoned); main frees every other one (remote frees into abandoned
 * slabs); thread B mallocs the same class (adopts A's slabs and reuses the
 * freed blocks) and exits with most of its blocks live. A's survivors keep
 * their contents, no block is both A's and B's, and once everything is
 * freed, malloc_trim(0) gives the SuperSlabs back (A's blocks alone take
 * about 4.5 MiB): the mapped bytes return to within 1 MiB of the start
 * (thread heaps stay mapped for reuse). */
static void t_adopt(void)
{
    hk_have_api();
    a_count = scaled(40000);
    b_count = a_count / 2;
    a_blocks = map_zeroed((size_t)a_count * sizeof *a_blocks);
    b_blocks = map_zeroed((size_t)b_count * sizeof *b_blocks);
    /* main gets a heap of its own (the frees it makes later adopt). */
    free(malloc(ADOPT_SIZE));
    /* Warm up: glibc keeps a thread's DTV (calloc'd by pthread_create) with
     * the stack it caches for the next thread; that block stays live. */
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, thread_noop, NULL) == 0, "pthread_create failed");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join failed");
    malloc_trim(0);
    struct hakmem_stats s0 = hk_stats();

    REQUIRE(pthread_create(&t, NULL, thread_a, NULL) == 0, "pthread_create failed");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join failed");
    struct hakmem_stats s1 = hk_stats();
    REQUIRE(pthread_create(&t, NULL, thread_free_half, NULL) == 0, "pthread_create failed");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join failed");
    CHECK(atomic_load(&freer_bad) == 0, "%ld of A's blocks changed before they were freed", atomic_load(&freer_bad));
    long freer_frees = (a_count + 1) / 2;

    REQUIRE(pthread_create(&t, NULL, thread_b, NULL) == 0, "pthread_create failed");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join failed");
    struct hakmem_stats s2 = hk_stats();

    for (long i = 1; i < a_count; i += 2) {
        long bad = check_pattern(a_blocks[i], ADOPT_SIZE, a_seed(i));
        CHECK(bad < 0, "A's live block #%ld (%p) changed at offset %ld after B adopted A's slabs", i,
              (void *)a_blocks[i], bad);
    }
    for (long i = 0; i < b_count; i++) {
        if (!b_blocks[i])
            continue;
        long bad = check_pattern(b_blocks[i], ADOPT_SIZE, b_seed(i));
        CHECK(bad < 0, "B's block #%ld changed at offset %ld", i, bad);
    }
    /* no live block belongs to both */
    size_t n = 0;
    uintptr_t *all = map_zeroed((size_t)(a_count + b_count) * sizeof *all);
    for (long i = 1; i < a_count; i += 2)
        all[n++] = (uintptr_t)a_blocks[i];
    for (long i = 0; i < b_count; i++)
        if (b_blocks[i])
            all[n++] = (uintptr_t)b_blocks[i];
    qsort(all, n, sizeof *all, cmp_ptr);
    for (size_t i = 1; i < n; i++)
        CHECK(all[i] - all[i - 1] >= ADOPT_SIZE, "live blocks %#lx and %#lx overlap", (unsigned long)all[i - 1],
              (unsigned long)all[i]);
    munmap(all, (size_t)(a_count + b_count) * sizeof *all);

    struct hakmem_stats s2b = hk_stats();
    long main_frees = 0;
    for (long i = 1; i < a_count; i += 2, main_frees++)
        free(a_blocks[i]);
    for (long i = 0; i < b_count; i++) {
        if (b_blocks[i]) {
            free(b_blocks[i]);
            main_frees++;
        }
    }
    malloc_trim(0);
    struct hakmem_stats s3 = hk_stats();

    if (hk_have_api()) {
        CHECK(s1.tiny_abandoned > s0.tiny_abandoned,
              "thread A exited with %ld live blocks, yet tiny_abandoned "
              "stayed at %llu",
              a_count, (unsigned long long)s1.tiny_abandoned);
        CHECK(s2.tiny_adopted > s1.tiny_adopted,
              "thread B allocated the class of A's abandoned slabs, yet "
              "tiny_adopted stayed at %llu",
              (unsigned long long)s2.tiny_adopted);
        CHECK(s2.tiny_remote_drained > s1.tiny_remote_drained,
              "the blocks a thread without a heap freed into A's abandoned slabs were never drained "
              "(tiny_remote_drained %llu)",
              (unsigned long long)s2.tiny_remote_drained);
        /* main has a heap: its frees into B's abandoned slabs adopt them. */
        CHECK(s3.tiny_adopted > s2b.tiny_adopted,
              "main freed into slabs abandoned by B, yet adopted none (tiny_adopted %llu)",
              (unsigned long long)s3.tiny_adopted);
        CHECK(s3.mapped_bytes <= s0.mapped_bytes + MiB && s3.superslabs <= s0.superslabs,
              "after freeing everything and malloc_trim(0): %llu bytes mapped in %llu SuperSlabs, at the start "
              "%llu bytes in %llu",
              (unsigned long long)s3.mapped_bytes, (unsigned long long)s3.superslabs,
              (unsigned long long)s0.mapped_bytes, (unsigned long long)s0.superslabs);
    }
    /* For the traced run: the heapless thread's frees into A's abandoned
     * slabs, main's frees (which adopt instead), and the process's totals. */
    printf("adopt main_tid=%ld main_frees=%ld freer_tid=%ld freer_frees=%ld abandoned_total=%llu adopted_total=%llu "
           "mapped_start=%llu mapped_peak=%llu mapped_end=%llu\n",
           (long)syscall(SYS_gettid), main_frees, freer_tid, freer_frees, (unsigned long long)s3.tiny_abandoned,
           (unsigned long long)s3.tiny_adopted, (unsigned long long)s0.mapped_bytes,
           (unsigned long long)s2.mapped_bytes, (unsigned long long)s3.mapped_bytes);
    munmap(a_blocks, (size_t)a_count * sizeof *a_blocks);
    munmap(b_blocks, (size_t)b_count * sizeof *b_blocks);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"remote_free", t_remote_free},
        {"adopt", t_adopt},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
