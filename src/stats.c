/* Counters and the human summary (HAKMEM_VERBOSE=1, malloc_stats()).
 *
 * Every build keeps the slow-path counters: they change only where a
 * probe fires anyway (refill, spill, map, unmap), so they cost nothing on
 * the fast path. A STATS=1 build also counts fast-path hits. */
#include <unistd.h>

#include "config.h"
#include "hakmem_internal.h"

struct hak_counters hak_counters;

#define HAK_STRINGIFY_(x) #x
#define HAK_STRINGIFY(x) HAK_STRINGIFY_(x)

HAK_EXPORT const char *hakmem_version(void)
{
    return HAK_STRINGIFY(HAKMEM_VERSION_MAJOR) "." HAK_STRINGIFY(HAKMEM_VERSION_MINOR) "." HAK_STRINGIFY(HAKMEM_VERSION_PATCH) " (usdt=" HAK_STRINGIFY(
        HAKMEM_USDT) " stats=" HAK_STRINGIFY(HAKMEM_ENABLE_STATS) " debug=" HAK_STRINGIFY(HAKMEM_BUILD_DEBUG) ")";
}

#define LOAD(field) atomic_load_explicit(&hak_counters.field, memory_order_relaxed)

HAK_EXPORT void hakmem_stats_get(struct hakmem_stats *out)
{
    out->mapped_bytes = LOAD(mapped_bytes);
    out->purged_bytes = LOAD(purged_bytes);
    out->os_map_calls = LOAD(os_map_calls);
    out->os_unmap_calls = LOAD(os_unmap_calls);
    out->os_purge_calls = LOAD(os_purge_calls);
    out->superslabs = LOAD(superslabs);
    out->tiny_refills = LOAD(tiny_refills);
    out->tiny_spills = LOAD(tiny_spills);
    out->large_live = LOAD(large_live);
    out->large_live_bytes = LOAD(large_live_bytes);
    out->bigcache_hits = LOAD(bigcache_hits);
    out->bigcache_misses = LOAD(bigcache_misses);
    out->bigcache_bytes = LOAD(bigcache_bytes);
    out->config_rejected = LOAD(config_rejected);
    out->threads_live = LOAD(threads_live);
    out->threads_exited = LOAD(threads_exited);
    out->malloc_calls = LOAD(malloc_calls);
    out->free_calls = LOAD(free_calls);
    out->tiny_hits = LOAD(tiny_hits);
    out->tiny_fallbacks = LOAD(tiny_fallbacks);
    out->tiny_remote_drained = LOAD(tiny_remote_drained);
    out->tiny_adopted = LOAD(tiny_adopted);
    out->tiny_abandoned = LOAD(tiny_abandoned);
    out->os_purge_events = LOAD(os_purge_events);
    out->mid_refills = LOAD(mid_refills);
    out->mid_spills = LOAD(mid_spills);
    out->mid_fallbacks = LOAD(mid_fallbacks);
    out->mid_ring_flushes = LOAD(mid_ring_flushes);
    for (int t = 0; t < 5; t++) {
        out->tier_mapped[t] = LOAD(tier_mapped[t]);
        out->tier_purged[t] = LOAD(tier_purged[t]);
    }
    out->l25_live_bytes = LOAD(l25_live_bytes);
    out->l25_free_resident = LOAD(l25_free_resident);
    out->l25_chunks = LOAD(l25_chunks);
    out->l25_refills = LOAD(l25_refills);
    out->l25_fallbacks = LOAD(l25_fallbacks);
    out->budget_exceeded = LOAD(budget_exceeded);
    out->diet_steps = LOAD(diet_steps);
    out->decay_purged_bytes = LOAD(decay_purged_bytes);
    out->scavenged_bytes = LOAD(scavenged_bytes);
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

HAK_EXPORT void hakmem_print_summary(int fd)
{
    struct hakmem_stats s;
    hakmem_stats_get(&s);
    uint64_t resident = s.mapped_bytes > s.purged_bytes ? s.mapped_bytes - s.purged_bytes : 0;
    hak_fdprintf(fd, "hakmem: summary pid %d: mapped %.1f MiB, resident at most %.1f MiB\n", (int)getpid(),
                 mib(s.mapped_bytes), mib(resident));
    hak_fdprintf(fd,
                 "hakmem:   tiny+mid (SuperSlabs): %llu SuperSlabs (%.1f MiB), refills %llu tiny + %llu mid, "
                 "spills %llu tiny + %llu mid, %llu ring flushes, %llu mid fallbacks; %.1f MiB purged (all tiers)\n",
                 (unsigned long long)s.superslabs, mib(s.superslabs * (2ull << 20)), (unsigned long long)s.tiny_refills,
                 (unsigned long long)s.mid_refills, (unsigned long long)s.tiny_spills, (unsigned long long)s.mid_spills,
                 (unsigned long long)s.mid_ring_flushes, (unsigned long long)s.mid_fallbacks, mib(s.purged_bytes));
    hak_fdprintf(fd,
                 "hakmem:   tiny: %llu fallbacks to the next tier, %llu blocks freed by other threads, "
                 "%llu slabs abandoned by exiting threads, %llu adopted\n",
                 (unsigned long long)s.tiny_fallbacks, (unsigned long long)s.tiny_remote_drained,
                 (unsigned long long)s.tiny_abandoned, (unsigned long long)s.tiny_adopted);
    hak_fdprintf(fd,
                 "hakmem:   l25: %llu chunks (%.1f MiB), %.1f MiB out, %.1f MiB free and resident, %llu refills, "
                 "%llu fallbacks to Large\n",
                 (unsigned long long)s.l25_chunks, mib(s.l25_chunks * (2ull << 20)), mib(s.l25_live_bytes),
                 mib(s.l25_free_resident), (unsigned long long)s.l25_refills, (unsigned long long)s.l25_fallbacks);
    static const char *const tier_names[5] = {"metadata", "superslabs", "-", "l25", "large"};
    hak_fdprintf(fd, "hakmem:   resident at most, by tier:");
    for (int t = 0; t < 5; t++)
        if (t != 2)
            hak_fdprintf(fd, " %s %.1f MiB", tier_names[t],
                         mib(s.tier_mapped[t] > s.tier_purged[t] ? s.tier_mapped[t] - s.tier_purged[t] : 0));
    hak_fdprintf(fd, "; %.1f MiB purged by decay, %.1f MiB scavenged from slabs in use\n", mib(s.decay_purged_bytes),
                 mib(s.scavenged_bytes));
    if (s.budget_exceeded || s.diet_steps)
        hak_fdprintf(fd, "hakmem:   RSS budget: exceeded at %llu checks, %llu diet steps\n",
                     (unsigned long long)s.budget_exceeded, (unsigned long long)s.diet_steps);
    hak_fdprintf(fd,
                 "hakmem:   large: %llu live blocks (%.1f MiB); BigCache %llu hits, %llu misses, holding %.1f MiB\n",
                 (unsigned long long)s.large_live, mib(s.large_live_bytes), (unsigned long long)s.bigcache_hits,
                 (unsigned long long)s.bigcache_misses, mib(s.bigcache_bytes));
    hak_fdprintf(fd,
                 "hakmem:   os: %llu mmap, %llu munmap, %llu madvise; threads: %llu live, %llu exited; "
                 "config: %llu rejected\n",
                 (unsigned long long)s.os_map_calls, (unsigned long long)s.os_unmap_calls,
                 (unsigned long long)s.os_purge_calls, (unsigned long long)s.threads_live,
                 (unsigned long long)s.threads_exited, (unsigned long long)s.config_rejected);
#if HAKMEM_ENABLE_STATS
    hak_fdprintf(fd, "hakmem:   fast path (STATS=1): %llu malloc, %llu free, %llu thread-cache hits\n",
                 (unsigned long long)s.malloc_calls, (unsigned long long)s.free_calls, (unsigned long long)s.tiny_hits);
#endif
}
