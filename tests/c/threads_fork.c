/* threads_fork — fork while other threads allocate, thousands of short
 * threads, memory freed by threads that then exit, and blocks freed on a
 * thread other than the one that allocated them. */
#include "check.h"
#include "hakmem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

typedef void (*stats_get_fn)(struct hakmem_stats *);

/* hakmem_stats_get through dlsym (the program is not linked with hakmem);
 * NULL in glibc mode. */
static stats_get_fn stats_get(void)
{
    if (hk_glibc_mode())
        return NULL;
    return (stats_get_fn)HAKMEM_SYMBOL("hakmem_stats_get");
}

static size_t random_size(uint64_t *rng)
{
    /* Mostly small, some mid and L2.5, a few large. */
    uint64_t r = rng_next(rng);
    switch (r % 16) {
    case 0: return 1024 + (r >> 8) % 31744;
    case 1: return 32768 + (r >> 8) % 500000;
    case 2: return (r >> 8) % 64 == 0 ? (1 << 20) + (r >> 16) % (3 << 20) : 2000;
    default: return 1 + (r >> 8) % 1024;
    }
}

/* ---- fork while allocating ---------------------------------------------- */

static atomic_int stop_workers;

static void *churn_worker(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg * 7919 + 1;
    enum { RING = 64 };
    void *ring[RING] = {0};
    size_t i = 0;
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        size_t slot = i++ % RING;
        free(ring[slot]);
        size_t n = random_size(&rng);
        switch (rng_next(&rng) % 4) {
        case 0: ring[slot] = calloc(1, n); break;
        case 1: ring[slot] = realloc(malloc(n / 2 + 1), n); break;
        default: ring[slot] = malloc(n);
        }
        if (ring[slot])
            memset(ring[slot], 0x42, n < 256 ? n : 256);
    }
    for (size_t k = 0; k < RING; k++)
        free(ring[k]);
    return NULL;
}

/* Work done by a forked child (and by a thread it starts). */
static void *child_work(void *arg)
{
    static const size_t sizes[] = {16, 100, 1000, 5000, 40000, 300000, 4 << 20};
    enum { KEEP = 32 };
    void *keep[KEEP] = {0};
    uint64_t rng = (uint64_t)(uintptr_t)arg + 3;
    int rounds = arg ? 2000 : 5000;
    for (int r = 0; r < rounds; r++) {
        size_t n = sizes[rng_next(&rng) % (sizeof sizes / sizeof sizes[0])];
        unsigned char *p = malloc(n);
        REQUIRE(p, "child malloc(%zu) failed", n);
        CHECK_OWNS(p);
        p[0] = 1;
        p[n - 1] = 2;
        size_t slot = rng_next(&rng) % KEEP;
        free(keep[slot]);
        keep[slot] = p;
    }
    for (size_t k = 0; k < KEEP; k++)
        free(keep[k]);
    return NULL;
}

static void t_fork_while_allocating(void)
{
    enum { WORKERS = 4, FORKS = 50 };
    pthread_t workers[WORKERS];
    atomic_store(&stop_workers, 0);
    for (int i = 0; i < WORKERS; i++)
        REQUIRE(pthread_create(&workers[i], NULL, churn_worker, (void *)(uintptr_t)(i + 1)) == 0,
                "pthread_create failed");
    int bad = 0;
    for (int f = 0; f < FORKS; f++) {
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork %d failed: %s", f, strerror(errno));
        if (pid == 0) {
            /* The other threads do not exist here; whatever locks they held
             * in the allocator at the fork must have been handled. */
            check_failures = 0;
            alarm(30); /* a deadlock shows as SIGALRM */
            child_work(NULL);
            pthread_t t;
            REQUIRE(pthread_create(&t, NULL, child_work, (void *)(uintptr_t)(f + 100)) == 0,
                    "pthread_create in the child failed");
            REQUIRE(pthread_join(t, NULL) == 0, "pthread_join in the child failed");
            exit(check_failures ? 1 : 0); /* exit, not _exit: atexit and destructors run */
        }
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
        if (WIFSIGNALED(status)) {
            CHECK(0, "child %d was killed by signal %d (%s)%s", f, WTERMSIG(status), strsignal(WTERMSIG(status)),
                  WTERMSIG(status) == SIGALRM ? ": deadlocked after fork?" : "");
            bad++;
        } else if (WEXITSTATUS(status) != 0) {
            CHECK(0, "child %d exited with %d", f, WEXITSTATUS(status));
            bad++;
        }
        if (bad > 3)
            break;
    }
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(workers[i], NULL);
}

/* ---- thread churn ------------------------------------------------------- */

enum { CHURN_BLOCKS = 300, CHURN_HANDOFF = 50 };

struct churn_arg {
    uint64_t seed;
    void *handoff[CHURN_HANDOFF]; /* freed by main after the thread is gone */
    size_t handoff_size[CHURN_HANDOFF];
};

static void *churn_thread(void *argp)
{
    struct churn_arg *arg = argp;
    uint64_t rng = arg->seed;
    void *blocks[CHURN_BLOCKS];
    size_t sizes[CHURN_BLOCKS];
    for (int i = 0; i < CHURN_BLOCKS; i++) {
        sizes[i] = 8 + rng_next(&rng) % (rng_next(&rng) % 8 == 0 ? 32768 : 512);
        blocks[i] = malloc(sizes[i]);
        if (!blocks[i])
            return (void *)1;
        fill_pattern(blocks[i], sizes[i], arg->seed + sizes[i]);
    }
    /* Free most in a shuffled order (they stay in this thread's cache when
     * it exits), hand the rest to main. */
    for (int i = CHURN_BLOCKS - 1; i > 0; i--) {
        int j = (int)(rng_next(&rng) % (uint64_t)(i + 1));
        void *tp = blocks[i];
        blocks[i] = blocks[j];
        blocks[j] = tp;
        size_t ts = sizes[i];
        sizes[i] = sizes[j];
        sizes[j] = ts;
    }
    for (int i = 0; i < CHURN_BLOCKS - CHURN_HANDOFF; i++)
        free(blocks[i]);
    for (int i = 0; i < CHURN_HANDOFF; i++) {
        int k = CHURN_BLOCKS - CHURN_HANDOFF + i;
        arg->handoff[i] = blocks[k];
        arg->handoff_size[i] = sizes[k];
    }
    return NULL;
}

static void t_thread_churn(void)
{
    enum { TOTAL = 3000, AT_ONCE = 4, WARMUP = 200 };
    static struct churn_arg args[AT_ONCE];
    size_t rss_warm = 0;
    int done = 0;
    while (done < TOTAL) {
        pthread_t t[AT_ONCE];
        for (int i = 0; i < AT_ONCE; i++) {
            args[i].seed = (uint64_t)(done + i) * 1000003 + 17;
            REQUIRE(pthread_create(&t[i], NULL, churn_thread, &args[i]) == 0, "pthread_create failed after %d threads",
                    done);
        }
        for (int i = 0; i < AT_ONCE; i++) {
            void *ret = NULL;
            REQUIRE(pthread_join(t[i], &ret) == 0, "pthread_join failed");
            REQUIRE(ret == NULL, "a churn thread's malloc failed");
            /* Free the dead thread's blocks here: remote frees to a thread
             * that no longer exists. */
            struct churn_arg *a = &args[i];
            for (int k = 0; k < CHURN_HANDOFF; k++) {
                CHECK_OWNS(a->handoff[k]);
                long bad = check_pattern(a->handoff[k], a->handoff_size[k], a->seed + a->handoff_size[k]);
                CHECK(bad < 0, "a %zu-byte block of an exited thread changed at offset %ld", a->handoff_size[k], bad);
                free(a->handoff[k]);
            }
        }
        done += AT_ONCE;
        if (done == WARMUP)
            rss_warm = rss_bytes();
    }
    size_t rss_end = rss_bytes();
    CHECK(rss_end < 2 * rss_warm + 8 * MiB,
          "RSS grew with the number of threads: %zu KiB after %d threads, %zu KiB after %d "
          "(bound 2x + 8 MiB): exited threads' memory is not reused",
          rss_warm >> 10, WARMUP, rss_end >> 10, TOTAL);
    stats_get_fn get = stats_get();
    if (get) {
        struct hakmem_stats st;
        memset(&st, 0, sizeof st);
        get(&st);
        CHECK(st.threads_exited >= TOTAL, "hakmem_stats.threads_exited = %llu after %d threads exited",
              (unsigned long long)st.threads_exited, TOTAL);
        CHECK(st.threads_live <= 1, "hakmem_stats.threads_live = %llu with only the main thread left",
              (unsigned long long)st.threads_live);
    }
}

/* ---- a thread's exit returns its cached memory --------------------------- */

static void *alloc_all_free_all(void *argp)
{
    uint64_t rng = (uint64_t)(uintptr_t)argp;
    enum { N = 20000 };
    void **blocks = malloc(N * sizeof *blocks);
    if (!blocks)
        return (void *)1;
    for (int i = 0; i < N; i++) {
        size_t n = 16 + rng_next(&rng) % 496;
        blocks[i] = malloc(n);
        if (!blocks[i])
            return (void *)1;
        memset(blocks[i], 7, n);
    }
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    free(blocks);
    return NULL;
}

/* Each round's threads allocate ~5 MiB in small blocks, free all of it and
 * exit. If an exiting thread kept (leaked) its cache, RSS would climb round
 * after round; if it is returned, later threads reuse it. */
static void t_thread_exit_returns_cache(void)
{
    enum { ROUNDS = 50, THREADS = 8, WARMUP = 5 };
    size_t rss_warm = 0;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++)
            REQUIRE(pthread_create(&t[i], NULL, alloc_all_free_all, (void *)(uintptr_t)(r * 100 + i + 1)) == 0,
                    "pthread_create failed");
        for (int i = 0; i < THREADS; i++) {
            void *ret = NULL;
            pthread_join(t[i], &ret);
            REQUIRE(ret == NULL, "a thread's malloc failed");
        }
        if (r + 1 == WARMUP)
            rss_warm = rss_bytes();
    }
    size_t rss_end = rss_bytes();
    CHECK(rss_end < 2 * rss_warm + 8 * MiB,
          "RSS grew round after round: %zu KiB after %d rounds, %zu KiB after %d (bound 2x + 8 MiB): "
          "memory freed by exited threads is not reused",
          rss_warm >> 10, WARMUP, rss_end >> 10, ROUNDS);
}

/* ---- cross-thread frees -------------------------------------------------- */

enum { XQ = 1024 };
struct xqueue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *items[XQ];
    size_t sizes[XQ];
    size_t head, tail;
    int closed;
};
static struct xqueue xq = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, {0}, 0, 0, 0};
static atomic_int x_corrupt;

static void *producer(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    for (int i = 0; i < 100000; i++) {
        size_t n = random_size(&rng) % 70000 + 1;
        unsigned char *p = malloc(n);
        if (!p) {
            atomic_fetch_add(&x_corrupt, 1);
            continue;
        }
        fill_pattern(p, n < 64 ? n : 64, n);
        pthread_mutex_lock(&xq.mu);
        while (xq.tail - xq.head == XQ)
            pthread_cond_wait(&xq.cv, &xq.mu);
        xq.items[xq.tail % XQ] = p;
        xq.sizes[xq.tail % XQ] = n;
        xq.tail++;
        pthread_cond_broadcast(&xq.cv);
        pthread_mutex_unlock(&xq.mu);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&xq.mu);
        while (xq.tail == xq.head && !xq.closed)
            pthread_cond_wait(&xq.cv, &xq.mu);
        if (xq.tail == xq.head && xq.closed) {
            pthread_mutex_unlock(&xq.mu);
            return NULL;
        }
        void *p = xq.items[xq.head % XQ];
        size_t n = xq.sizes[xq.head % XQ];
        xq.head++;
        pthread_cond_broadcast(&xq.cv);
        pthread_mutex_unlock(&xq.mu);
        if (check_pattern(p, n < 64 ? n : 64, n) >= 0 || !hk_owns(p))
            atomic_fetch_add(&x_corrupt, 1);
        free(p);
    }
}

/* Two producers allocate, two consumers free: nearly every free is remote. */
static void t_cross_thread_free(void)
{
    pthread_t prod[2], cons[2];
    for (int i = 0; i < 2; i++) {
        REQUIRE(pthread_create(&prod[i], NULL, producer, (void *)(uintptr_t)(i + 11)) == 0, "create");
        REQUIRE(pthread_create(&cons[i], NULL, consumer, NULL) == 0, "create");
    }
    for (int i = 0; i < 2; i++)
        pthread_join(prod[i], NULL);
    pthread_mutex_lock(&xq.mu);
    xq.closed = 1;
    pthread_cond_broadcast(&xq.cv);
    pthread_mutex_unlock(&xq.mu);
    for (int i = 0; i < 2; i++)
        pthread_join(cons[i], NULL);
    CHECK(atomic_load(&x_corrupt) == 0, "%d blocks were corrupted, not hakmem's, or failed to allocate between threads",
          atomic_load(&x_corrupt));
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"fork_while_allocating", t_fork_while_allocating},
        {"thread_churn", t_thread_churn},
        {"thread_exit_returns_cache", t_thread_exit_returns_cache},
        {"cross_thread_free", t_cross_thread_free},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
