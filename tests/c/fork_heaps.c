/* The heaps of threads a fork() child did not inherit.
 *
 * Four threads allocate small blocks and keep some of them cached (freed
 * into their own thread caches), then wait. The main thread forks. In the
 * child only the main thread exists; glibc reuses the dead threads'
 * stacks, so the thread pointers, for the child's next threads. The child
 * starts new threads that free the dead threads' live blocks and allocate
 * and free many blocks of the same classes: a stale slab owner would make
 * them take the dead threads' slabs for their own and corrupt the lists.
 * Every block's contents are checked, and the child must exit cleanly.
 * Once everything is freed, malloc_trim(0) must leave the child no more
 * SuperSlabs than the process had before the threads started: the dead
 * threads' cached blocks went back to their slabs instead of pinning them. */
#include "check.h"
#include "hk_api.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4
#define KEPT 2000
#define SIZES 6

static const size_t sizes[SIZES] = {16, 24, 48, 100, 200, 700};
static unsigned char *kept[THREADS][KEPT];
static pthread_barrier_t ready, release;

static unsigned char pattern(int thread, int i)
{
    return (unsigned char)(thread * 31 + i * 7 + 1);
}

static void *parent_worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    void *cached[500];
    for (int i = 0; i < KEPT; i++) {
        size_t size = sizes[i % SIZES];
        kept[t][i] = malloc(size);
        memset(kept[t][i], pattern(t, i), size);
    }
    /* Blocks freed by their owner sit in its thread cache at the fork. */
    for (int i = 0; i < 500; i++)
        cached[i] = malloc(sizes[i % SIZES]);
    for (int i = 0; i < 500; i++)
        free(cached[i]);
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&release);
    for (int i = 0; i < KEPT; i++)
        free(kept[t][i]);
    return NULL;
}

static atomic_int child_errors;
static unsigned long long baseline_superslabs;

static void *child_worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < KEPT; i++) {
        size_t size = sizes[i % SIZES];
        for (size_t k = 0; k < size; k++)
            if (kept[t][i][k] != pattern(t, i)) {
                atomic_fetch_add(&child_errors, 1);
                break;
            }
        free(kept[t][i]);
    }
    for (int round = 0; round < 50; round++) {
        void *blocks[600];
        for (int i = 0; i < 600; i++) {
            size_t size = sizes[(i + round) % SIZES];
            blocks[i] = malloc(size);
            if (!blocks[i]) {
                atomic_fetch_add(&child_errors, 1);
                continue;
            }
            memset(blocks[i], (int)(i & 0xff), size);
        }
        for (int i = 0; i < 600; i++) {
            unsigned char *b = blocks[i];
            if (b && b[0] != (unsigned char)(i & 0xff))
                atomic_fetch_add(&child_errors, 1);
            free(b);
        }
    }
    return NULL;
}

static int child_main(void)
{
    pthread_t tids[THREADS];
    for (int t = 0; t < THREADS; t++)
        if (pthread_create(&tids[t], NULL, child_worker, (void *)(intptr_t)t) != 0)
            return 3;
    for (int t = 0; t < THREADS; t++)
        pthread_join(tids[t], NULL);
    if (atomic_load(&child_errors))
        return 4;
    if (!hk_glibc_mode()) {
        void (*stats_get)(struct hakmem_stats *) = (void (*)(struct hakmem_stats *))HAKMEM_SYMBOL("hakmem_stats_get");
        struct hakmem_stats s;
        malloc_trim(0);
        stats_get(&s);
        if (s.superslabs > baseline_superslabs) {
            fprintf(stderr,
                    "child: %llu SuperSlabs still mapped after freeing everything and malloc_trim, %llu before "
                    "the threads started\n",
                    (unsigned long long)s.superslabs, baseline_superslabs);
            return 5;
        }
    }
    return 0;
}

static void t_fork_with_cached_heaps(void)
{
    pthread_t tids[THREADS];
    /* stdio's buffer and the like stay live: count them in the baseline. */
    printf("fork_heaps: starting\n");
    if (!hk_glibc_mode()) {
        void (*stats_get)(struct hakmem_stats *) = (void (*)(struct hakmem_stats *))HAKMEM_SYMBOL("hakmem_stats_get");
        struct hakmem_stats s;
        malloc_trim(0);
        stats_get(&s);
        baseline_superslabs = (unsigned long long)s.superslabs;
    }
    pthread_barrier_init(&ready, NULL, THREADS + 1);
    pthread_barrier_init(&release, NULL, THREADS + 1);
    for (int t = 0; t < THREADS; t++)
        REQUIRE(pthread_create(&tids[t], NULL, parent_worker, (void *)(intptr_t)t) == 0, "create");
    pthread_barrier_wait(&ready);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0)
        _exit(child_main());
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "child: %s %d (3: thread creation failed, 4: corrupted or missing blocks, 5: SuperSlabs left after "
          "malloc_trim)",
          WIFEXITED(status) ? "exit status" : "killed by signal",
          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    pthread_barrier_wait(&release);
    for (int t = 0; t < THREADS; t++)
        pthread_join(tids[t], NULL);
}

int main(int argc, char **argv)
{
    static const struct subtest tests[] = {
        {"fork_with_cached_heaps", t_fork_with_cached_heaps},
    };
    return run_subtests(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
