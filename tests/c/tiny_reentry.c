/* tiny_reentry — malloc and free called from inside hakmem's Tiny slow
 * path. The program defines its own mmap() (it forwards with
 * syscall(SYS_mmap)); libhakmem calls mmap through its GOT, so this one
 * is what it gets when it maps a SuperSlab or a thread heap. While
 * `hook_armed` is set, the hook calls malloc(24) and frees one block the
 * program allocated earlier. hakmem must serve the nested malloc from the
 * Large tier (tiny_fallback reason 3), put the nested free on a remote
 * list, and neither deadlock nor return NULL. */
#include "check.h"
#include "hk_api.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define NESTED_MAX 4096
#define NESTED_SIZE 24

static atomic_int hook_armed;
static __thread int in_hook;

/* What the hook did, in the hook's own static memory (it must not
 * allocate to record). Only the worker thread arms it. */
static void *nested[NESTED_MAX];
static size_t nested_usable[NESTED_MAX];
static int nested_count, nested_null, hook_calls, hook_frees;
static long mmap_calls;

/* Blocks the worker donates for the hook to free (a previous block). */
static unsigned char *donated[NESTED_MAX];
static atomic_int donated_count, donated_next;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    __atomic_add_fetch(&mmap_calls, 1, __ATOMIC_RELAXED);
    if (atomic_load(&hook_armed) && !in_hook) {
        in_hook = 1;
        hook_calls++;
        void *q = malloc(NESTED_SIZE);
        if (!q) {
            nested_null++;
        } else if (nested_count < NESTED_MAX) {
            memset(q, 0xa5, NESTED_SIZE);
            nested_usable[nested_count] = malloc_usable_size(q);
            nested[nested_count++] = q;
        }
        int k = atomic_load(&donated_next);
        if (k < atomic_load(&donated_count)) {
            atomic_store(&donated_next, k + 1);
            free(donated[k]);
            hook_frees++;
        }
        in_hook = 0;
    }
    return p;
}

static long worker_blocks, worker_tid;
static unsigned char **blocks;

static void *worker(void *arg)
{
    (void)arg;
    worker_tid = (long)syscall(SYS_gettid);
    /* Blocks to donate: 48 bytes, a class the loop below does not use. */
    for (int i = 0; i < 256; i++) {
        donated[i] = malloc(48);
        REQUIRE(donated[i], "malloc(48) failed");
        memset(donated[i], 0x48, 48);
    }
    atomic_store(&donated_count, 256);
    atomic_store(&hook_armed, 1);
    /* Enough 64-byte blocks for several SuperSlabs (31 x 1024 per SuperSlab). */
    for (long i = 0; i < worker_blocks; i++) {
        blocks[i] = malloc(64);
        REQUIRE(blocks[i], "malloc(64) #%ld returned NULL (nested: %d)", i, nested_count);
        fill_pattern(blocks[i], 64, (uint64_t)i);
    }
    atomic_store(&hook_armed, 0);
    return NULL;
}

static void t_reentry(void)
{
    hk_have_api();
    worker_blocks = env_long("HKTEST_COUNT", 300000);
    blocks = (unsigned char **)syscall(SYS_mmap, NULL, (size_t)worker_blocks * sizeof *blocks, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(blocks != MAP_FAILED, "mmap failed");
    struct hakmem_stats before = hk_stats();
    long calls_before = __atomic_load_n(&mmap_calls, __ATOMIC_RELAXED);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create failed");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join failed");
    struct hakmem_stats after = hk_stats();
    long calls = __atomic_load_n(&mmap_calls, __ATOMIC_RELAXED) - calls_before;

    if (!hk_glibc_mode()) {
        CHECK(calls > 0, "the program's mmap() was never called: hakmem does not reach an interposed mmap");
        CHECK(hook_calls > 0, "the hook never ran while armed");
        CHECK(nested_count > 0, "no nested malloc was recorded");
    }
    CHECK(nested_null == 0, "%d nested malloc(%d) calls returned NULL", nested_null, NESTED_SIZE);
    for (int i = 0; i < nested_count; i++) {
        unsigned char *q = nested[i];
        CHECK(nested_usable[i] >= NESTED_SIZE, "nested block %p: usable %zu", (void *)q, nested_usable[i]);
        CHECK(find_not_byte(q, NESTED_SIZE, 0xa5) < 0, "nested block %p changed", (void *)q);
        CHECK_OWNS(q);
        if (hk_have_api())
            CHECK(hk_tier(q) == HAKMEM_TIER_LARGE,
                  "nested malloc(%d) inside the Tiny slow path is in tier %s, expected LARGE (the reentrant "
                  "fallback)",
                  NESTED_SIZE, hk_tier_name(hk_tier(q)));
        fill_pattern(q, nested_usable[i], (uint64_t)i);
    }
    for (long i = 0; i < worker_blocks; i++) {
        long bad = check_pattern(blocks[i], 64, (uint64_t)i);
        CHECK(bad < 0, "block #%ld changed at offset %ld", i, bad);
    }
    /* the donated blocks the hook did not free are intact */
    for (int k = atomic_load(&donated_next); k < atomic_load(&donated_count); k++)
        CHECK(find_not_byte(donated[k], 48, 0x48) < 0, "donated block #%d changed", k);
    /* the worker's own mallocs never fall back: exactly the nested ones do */
    if (hk_have_api())
        CHECK(after.tiny_fallbacks - before.tiny_fallbacks == (uint64_t)nested_count,
              "%d nested mallocs, but tiny_fallbacks grew by %llu", nested_count,
              (unsigned long long)(after.tiny_fallbacks - before.tiny_fallbacks));
    /* everything is freeable from an ordinary context */
    for (int i = 0; i < nested_count; i++) {
        CHECK(check_pattern(nested[i], nested_usable[i], (uint64_t)i) < 0, "nested block #%d changed", i);
        free(nested[i]);
    }
    for (long i = 0; i < worker_blocks; i++)
        free(blocks[i]);
    for (int k = atomic_load(&donated_next); k < atomic_load(&donated_count); k++)
        free(donated[k]);
    printf("reentry worker_tid=%ld mmap_calls=%ld hook_calls=%d nested=%d hook_frees=%d fallbacks=%llu\n", worker_tid,
           calls, hook_calls, nested_count, hook_frees,
           (unsigned long long)(after.tiny_fallbacks - before.tiny_fallbacks));
    syscall(SYS_munmap, blocks, (size_t)worker_blocks * sizeof *blocks);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"reentry", t_reentry},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
