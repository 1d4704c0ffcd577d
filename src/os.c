/* The OS layer: every mapping, unmapping and purge hakmem makes goes
 * through here, so the probes os_map / os_unmap / os_purge see all of it
 * and the resident memory of each tier can be derived from their
 * arguments alone (mapped - unmapped - purged). */
#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hakmem_internal.h"
#include "probes.h"

/* What every successful mapping counts and reports. */
static void *mapped(void *p, size_t bytes, int tier)
{
    HAK_COUNT(os_map_calls, 1);
    HAK_COUNT(mapped_bytes, bytes);
    HAK_COUNT(tier_mapped[tier], bytes);
    HAK_PROBE(os_map, bytes, tier, p);
    return p;
}

void *hak_os_map(size_t bytes, int tier)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        int err = errno;
        HAK_PROBE(os_map_failed, bytes, tier, err);
        errno = ENOMEM;
        return NULL;
    }
    return mapped(p, bytes, tier);
}

/* Over-map by the alignment and trim both ends: the kernel hands out
 * page-aligned addresses only. */
void *hak_os_map_aligned(size_t bytes, size_t align, int tier)
{
    if (align <= HAK_PAGE)
        return hak_os_map(bytes, tier);
    size_t span = bytes + align;
    if (span < bytes) {
        errno = ENOMEM;
        return NULL;
    }
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
        int err = errno;
        HAK_PROBE(os_map_failed, bytes, tier, err);
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw;
    size_t tail = span - head - bytes;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((char *)start + bytes, tail);
    return mapped((void *)start, bytes, tier);
}

void hak_os_unmap(void *p, size_t bytes, int tier)
{
    if (munmap(p, bytes) != 0)
        hak_warn("munmap(%p, %zu) failed (errno %d)", p, bytes, errno);
    HAK_COUNT(os_unmap_calls, 1);
    HAK_UNCOUNT(mapped_bytes, bytes);
    HAK_UNCOUNT(tier_mapped[tier], bytes);
    HAK_PROBE(os_unmap, bytes, tier, p);
}

/* MADV_DONTNEED rather than MADV_FREE: the pages leave RSS at once, so
 * what a tool reads in /proc matches what the probes report. Measured on
 * bench phases (scale 0.3, 3 runs each): MADV_FREE left 50 MB resident
 * after the program freed all but 73 KB, MADV_DONTNEED 11-12 MB, with the
 * same page faults (27 710) and time (0.10-0.12 s): lazily freed pages
 * stay in RSS until the kernel needs memory, and nothing is gained. */
void hak_os_purge(void *p, size_t bytes, int tier)
{
    int saved = errno;
    madvise(p, bytes, MADV_DONTNEED);
    errno = saved;
    HAK_COUNT(os_purge_calls, 1);
    hak_os_purge_accounting(p, bytes, tier);
}

/* Pages that were never touched (a fresh L25 run's blocks, a SuperSlab's
 * slabs not yet carved) count as purged without a madvise, so that
 * mapped - unmapped - purged + reused counts only what can be resident. */
void hak_os_purge_accounting(void *p, size_t bytes, int tier)
{
    HAK_COUNT(os_purge_events, 1);
    HAK_COUNT(purged_bytes, bytes);
    HAK_COUNT(tier_purged[tier], bytes);
    HAK_PROBE(os_purge, bytes, tier, p);
}

void hak_os_unpurge(void *p, size_t bytes, int tier)
{
    HAK_UNCOUNT(purged_bytes, bytes);
    HAK_UNCOUNT(tier_purged[tier], bytes);
    HAK_PROBE(os_reuse, bytes, tier, p);
}

void hak_os_hugepage(void *p, size_t bytes, bool on)
{
    int saved = errno;
    madvise(p, bytes, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    errno = saved;
}

/* MEMBARRIER_CMD_PRIVATE_EXPEDITED: an IPI to every CPU running one of the
 * process's threads (a thread not running passed a context switch, itself
 * a barrier). Registered on first use, and again in a fork child, whose
 * new mm starts unregistered. */
bool hak_membarrier(void)
{
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
        return true;
    int saved = errno;
    bool ok = syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
              syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
    errno = saved;
    return ok;
}

/* Yields first; after a while sleeps, so that a waiter of a higher
 * real-time priority does not keep the decay thread from the CPU. */
void hak_gate_wait(struct hak_idle_gate *gate)
{
    for (unsigned round = 0; atomic_load_explicit(&gate->closed, memory_order_acquire); round++)
        hak_backoff(round);
}

void hak_backoff(unsigned round)
{
    if (round < 64) {
        sched_yield();
    } else {
        struct timespec nap = {0, 50 * 1000};
        nanosleep(&nap, NULL);
    }
}
