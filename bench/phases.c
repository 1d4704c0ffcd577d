/* phases: does memory go back to the OS when a program's footprint shrinks?
 *   fill      ~64 MiB of small blocks (8 B - 1 KiB, log-uniform)
 *   freemost  free a random 90% of them
 *   other     allocate ~32 MiB of other sizes (2 - 64 KiB), which size-
 *             segregated allocators cannot carve from the freed small slabs
 *   keep1     free everything except the oldest 1% of the live blocks
 *             (long-lived data tends to be the oldest), so whole slabs and
 *             spans become empty and can be returned
 *   idle      sleep 1.5 s (BENCH_IDLE_S) in slices, calling nothing, so only
 *             time-based purging (decay timers, background threads) can act
 * RSS after each phase is reported as rss_<phase>_kb; end_rss_kb is the RSS
 * after idle, next to the ~1% of bytes still live. rss_start_kb is the RSS
 * before the first allocation, and live_pages_kb the 4 KiB pages the
 * survivors touch: the least any allocator that does not move blocks can
 * keep resident for them (the survivors are spread over the first fill). The sizes do not scale:
 * the scale argument only shortens the idle time below scale 0.5.
 * seconds covers the work, not the idle sleep; an op is a malloc or free. */
#include "bench_common.h"

#define FILL_BYTES (64ULL << 20)
#define OTHER_BYTES (32ULL << 20)
#define MAX_OBJECTS (FILL_BYTES / 8)

/* The block's size lives in its first 4 bytes (every block is >= 8 B), so
 * the harness keeps only a pointer array, and that array is unmapped before
 * the last measurements. */
static void *make(size_t size)
{
    uint32_t *p = xmalloc(size);
    bench_touch(p, size, 0x5a);
    p[0] = (uint32_t)size;
    return p;
}

static int cmp_uintptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static size_t size_of(const void *p)
{
    return *(const uint32_t *)p;
}

int main(int argc, char **argv)
{
    struct bench_args a = bench_parse(argc, argv);
    double idle = bench_env_double("BENCH_IDLE_S", a.scale < 0.5 ? 0.5 : 1.5);
    struct size_table *tables = bench_map(2 * sizeof *tables);
    size_table_log_uniform(&tables[0], 8, 1024, 21);
    size_table_log_uniform(&tables[1], 2048, 65536, 22);
    void **objs = bench_map(MAX_OBJECTS * sizeof *objs);
    size_t count = 0;
    uint64_t live = 0, ops = 0;
    bench_rng r;
    rng_seed(&r, 9);

    long rss_start = bench_rss_kb();
    double t0 = bench_now();
    while (live < FILL_BYTES && count < MAX_OBJECTS) {
        objs[count] = make(size_table_pick(&tables[0], &r));
        live += size_of(objs[count++]);
    }
    ops += count;
    long rss_fill = bench_rss_kb();
    uint64_t live_fill = live;

    for (size_t i = 0; i < count; i++) {
        if (rng_below(&r, 10) != 0) {
            live -= size_of(objs[i]);
            free(objs[i]);
            objs[i] = NULL;
            ops++;
        }
    }
    long rss_freemost = bench_rss_kb();

    for (uint64_t added = 0; added < OTHER_BYTES && count < MAX_OBJECTS; ops++) {
        objs[count] = make(size_table_pick(&tables[1], &r));
        added += size_of(objs[count]);
        live += size_of(objs[count++]);
    }
    long rss_other = bench_rss_kb();
    uint64_t live_other = live;

    /* Survivors move to a small array so that the harness's own big array
     * does not count in the RSS that follows. */
    size_t live_count = 0;
    for (size_t i = 0; i < count; i++)
        live_count += objs[i] != NULL;
    size_t keep_count = live_count / 100 + 1;
    void **keep = bench_map(keep_count * sizeof *keep);
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (!objs[i])
            continue;
        if (kept < keep_count) {
            keep[kept++] = objs[i];
        } else {
            live -= size_of(objs[i]);
            free(objs[i]);
            ops++;
        }
    }
    bench_unmap(objs, MAX_OBJECTS * sizeof *objs);
    long rss_keep1 = bench_rss_kb();
    double seconds = bench_now() - t0;

    /* Slices, so that an allocator's timer-driven purging has wake-ups to
     * line up with; nothing here calls into the allocator. */
    for (double slept = 0; slept < idle; slept += 0.1)
        bench_sleep(0.1);
    long rss_idle = bench_rss_kb();

    /* The survivors' headers must have outlived all that freeing. */
    for (size_t i = 0; i < kept; i++)
        if (size_of(keep[i]) < 8 || size_of(keep[i]) > 65536)
            bench_die("survivor check", i);
    size_t npages = 0;
    uintptr_t *pages = bench_map((kept * 17 + 1) * sizeof *pages);
    for (size_t i = 0; i < kept; i++)
        for (uintptr_t pg = (uintptr_t)keep[i] >> 12; pg <= ((uintptr_t)keep[i] + size_of(keep[i]) - 1) >> 12; pg++)
            pages[npages++] = pg;
    qsort(pages, npages, sizeof *pages, cmp_uintptr);
    size_t distinct = 0;
    for (size_t i = 0; i < npages; i++)
        distinct += i == 0 || pages[i] != pages[i - 1];
    char extra[256];
    snprintf(extra, sizeof extra,
             " rss_fill_kb=%ld rss_freemost_kb=%ld rss_other_kb=%ld rss_keep1_kb=%ld"
             " rss_idle_kb=%ld live_fill_bytes=%llu live_other_bytes=%llu idle_seconds=%.1f"
             " rss_start_kb=%ld live_pages_kb=%zu",
             rss_fill, rss_freemost, rss_other, rss_keep1, rss_idle, (unsigned long long)live_fill,
             (unsigned long long)live_other, idle, rss_start, distinct * 4);
    bench_result("phases", 1, seconds, ops, rss_idle, live, extra);
    return 0;
}
