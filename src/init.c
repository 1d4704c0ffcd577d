/* Initialisation, threads and fork.
 *
 * Initialisation runs once, in whichever thread allocates first (or in
 * the library constructor). It must never recurse into a tier that is not
 * ready: while it runs, that thread's allocations come from a static
 * bootstrap arena; other threads wait for it. Reading the environment,
 * pthread_key_create and pthread_atfork allocate nothing in glibc 2.36,
 * but if a future libc did, the arena would serve it. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "l25.h"
#include "observe.h"
#include "probes.h"
#include "tiny.h"

_Atomic int hak_init_state;
static HAK_TLS bool initialising;
static pthread_key_t thread_key;
static bool thread_key_ready;

/* ---- bootstrap arena ---- */

#define BOOT_ARENA_SIZE (256 * 1024)
static char boot_arena[BOOT_ARENA_SIZE] __attribute__((aligned(4096)));
static _Atomic size_t boot_used;

struct boot_header {
    size_t size;
    size_t pad;
};

bool hak_in_bootstrap(void)
{
    return initialising;
}

void *hak_boot_alloc(size_t size, size_t align)
{
    if (align < HAK_MIN_ALIGN)
        align = HAK_MIN_ALIGN;
    size_t need = sizeof(struct boot_header) + size + align;
    if (size > BOOT_ARENA_SIZE)
        return NULL;
    size_t start = atomic_fetch_add(&boot_used, need);
    if (start + need > BOOT_ARENA_SIZE)
        hak_fatal("bootstrap arena exhausted during initialisation (%zu bytes)", size);
    uintptr_t user = hak_align_up((uintptr_t)boot_arena + start + sizeof(struct boot_header), align);
    ((struct boot_header *)user)[-1].size = size;
    return (void *)user;
}

bool hak_is_boot_ptr(const void *p)
{
    return (const char *)p >= boot_arena && (const char *)p < boot_arena + BOOT_ARENA_SIZE;
}

size_t hak_boot_usable(const void *p)
{
    return ((const struct boot_header *)p)[-1].size;
}

/* ---- threads ---- */

static void thread_exit(void *value)
{
    (void)value;
    uint64_t blocks, bytes;
    hak_small_thread_flush(true, &blocks, &bytes);
    hak_l25_thread_flush(true);
    HAK_UNCOUNT(threads_live, 1);
    HAK_COUNT(threads_exited, 1);
    HAK_PROBE(thread_exit, (long)syscall(SYS_gettid), blocks, bytes);
}

/* Idempotent: the Tiny heap and the L25 cache both register the thread,
 * whichever it uses first. */
void hak_thread_register(void)
{
    static HAK_TLS bool registered;
    if (registered)
        return;
    registered = true;
    if (thread_key_ready)
        pthread_setspecific(thread_key, (void *)1);
    HAK_COUNT(threads_live, 1);
    HAK_PROBE(thread_init, (long)syscall(SYS_gettid));
}

/* ---- fork: no lock may be held by a thread that does not exist in the
 * child ---- */

static void fork_prepare(void)
{
    hak_small_lock_all();
    hak_l25_lock_all();
    hak_large_lock_all();
}

static void fork_parent(void)
{
    hak_large_unlock_all();
    hak_l25_unlock_all();
    hak_small_unlock_all();
}

static void fork_child(void)
{
    hak_large_reset_after_fork();
    hak_l25_reset_after_fork();
    hak_small_reset_after_fork();
    hak_decay_thread_after_fork();
    hak_counters.threads_live = 1;
}

/* `hakmem trace -- CMD` starts CMD with HAKMEM_TRACE_WAIT=<its pid>: the
 * process stops itself here, before its first allocation is served, until
 * the launcher has attached the tracer and sends SIGCONT. Keyed on the pid
 * so that CMD's own children do not stop. Read from environ directly:
 * nothing may allocate yet. */
static void wait_for_tracer(void)
{
    extern char **environ;
    static const char key[] = "HAKMEM_TRACE_WAIT=";
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, key, sizeof(key) - 1) != 0)
            continue;
        long want = 0;
        char *digits = *e + sizeof(key) - 1, *c = digits;
        for (; *c >= '0' && *c <= '9'; c++)
            want = want * 10 + (*c - '0');
        if (want != (long)getpid())
            return;
        /* Once only: a program this process execs keeps its pid. */
        memset(digits, '0', (size_t)(c - digits));
        raise(SIGSTOP);
        return;
    }
}

void hak_init_slow(void)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&hak_init_state, &expected, 1)) {
        initialising = true;
        wait_for_tracer();
        hak_config_load();
        hak_small_init();
        hak_l25_init();
        hak_budget_init();
        hak_observe_init();
        hak_large_init();
        thread_key_ready = pthread_key_create(&thread_key, thread_exit) == 0;
        pthread_atfork(fork_prepare, fork_parent, fork_child);
        initialising = false;
        atomic_store_explicit(&hak_init_state, 2, memory_order_release);
        if (hak_cfg_int(HAK_CFG_VERBOSE) >= 1 && !hak_cfg_int(HAK_CFG_QUIET)) {
            hak_info("%s loaded in pid %d (%u HAKMEM_* values rejected)", hakmem_version(), (int)getpid(),
                     hak_config_rejected_count());
            if (hak_cfg_int(HAK_CFG_VERBOSE) >= 2)
                hakmem_config_print(hak_log_fd(), 0);
        }
        return;
    }
    if (initialising)
        return; /* re-entered from our own initialisation: bootstrap arena */
    while (atomic_load_explicit(&hak_init_state, memory_order_acquire) != 2)
        sched_yield();
}

__attribute__((constructor)) static void hak_constructor(void)
{
    hak_ensure_init();
}

__attribute__((destructor)) static void hak_destructor(void)
{
    if (atomic_load(&hak_init_state) != 2)
        return;
    if (hak_cfg_int(HAK_CFG_VERBOSE) >= 1 && !hak_cfg_int(HAK_CFG_QUIET))
        hakmem_print_summary(hak_log_fd());
    /* HAKMEM_PROF, _TIMING, _HIST_SAMPLE: asked for explicitly, so printed
     * even under HAKMEM_QUIET (which silences warnings). */
    hak_observe_report(hak_log_fd());
}
