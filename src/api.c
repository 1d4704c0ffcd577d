/* The exported malloc API: what LD_PRELOAD and -lhakmem replace. Every
 * failure returns NULL with errno = ENOMEM (EINVAL for a bad alignment
 * where the standard says so); nothing here crashes on a bad size. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "l25.h"
#include "probes.h"

/* ---- dispatcher slow paths ---- */

HAK_NOINLINE void *hak_alloc_slow(size_t size, size_t align)
{
    hak_ensure_init();
    if (HAK_UNLIKELY(hak_in_bootstrap()))
        return hak_boot_alloc(size, align);
    if (HAK_UNLIKELY(size > PTRDIFF_MAX)) {
        HAK_PROBE(os_oom, size, align, HAK_PT_LARGE);
        errno = ENOMEM;
        return NULL;
    }
    void *p = NULL;
    if (align > HAK_MIN_ALIGN && hak_small_can_align(size, align))
        p = hak_small_alloc_aligned(size, align);
    else if (size <= HAK_SMALL_MAX && align <= HAK_MIN_ALIGN)
        p = hak_small_alloc_inline(size);
    else if (size > HAK_SMALL_MAX && size <= HAK_L25_MAX && align <= HAK_PAGE)
        p = hak_l25_alloc(size);
    if (p)
        return p;
    return hak_large_alloc(size, align, false);
}

HAK_NOINLINE void hak_free_slow(void *p)
{
    if (hak_l25_contains(p)) {
        hak_l25_free(p);
        return;
    }
    if (hak_is_boot_ptr(p))
        return; /* the bootstrap arena is never reused */
    hak_large_free(p);
}

static size_t usable_size(const void *p)
{
    if (hak_ss_contains(p))
        return hak_small_usable(p);
    if (hak_l25_contains(p))
        return hak_l25_usable(p);
    if (hak_is_boot_ptr(p))
        return hak_boot_usable(p);
    return hak_large_usable(p);
}

static void *alloc_aligned(size_t size, size_t align)
{
    /* Requests under 16 bytes get 8-byte blocks; an explicit 16-byte
     * alignment needs a 16-byte one. */
    if (align <= HAK_MIN_ALIGN)
        return hak_alloc_inline(align == HAK_MIN_ALIGN && size < HAK_MIN_ALIGN ? HAK_MIN_ALIGN : size);
    return hak_alloc_slow(size, align);
}

static bool is_power_of_two(size_t x)
{
    return x && (x & (x - 1)) == 0;
}

/* Large blocks come from fresh mappings (already zero) unless the
 * BigCache served them: the Large tier clears only those. */
static void *alloc_zeroed(size_t size)
{
    if (size <= HAK_SMALL_MAX) {
        void *p = hak_alloc_inline(size);
        if (p)
            memset(p, 0, size);
        return p;
    }
    hak_ensure_init();
    if (hak_in_bootstrap())
        return hak_boot_alloc(size, HAK_MIN_ALIGN); /* static arena: zero */
    if (size > PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    if (size <= HAK_L25_MAX) {
        void *p = hak_l25_alloc(size);
        if (p) {
            memset(p, 0, size);
            return p;
        }
    }
    return hak_large_alloc(size, HAK_MIN_ALIGN, true);
}

/* ---- the C API ---- */

HAK_EXPORT void *malloc(size_t size)
{
#if HAKMEM_ENABLE_STATS
    HAK_COUNT(malloc_calls, 1);
#endif
    return hak_alloc_inline(size);
}

HAK_EXPORT void free(void *p)
{
#if HAKMEM_ENABLE_STATS
    HAK_COUNT(free_calls, 1);
#endif
    hak_free_inline(p);
}

HAK_EXPORT void cfree(void *p);
HAK_EXPORT void cfree(void *p)
{
    hak_free_inline(p);
}

HAK_EXPORT void free_sized(void *p, size_t size);
HAK_EXPORT void free_sized(void *p, size_t size)
{
    (void)size;
    hak_free_inline(p);
}

HAK_EXPORT void free_aligned_sized(void *p, size_t align, size_t size);
HAK_EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
    (void)align;
    (void)size;
    hak_free_inline(p);
}

HAK_EXPORT void *calloc(size_t count, size_t size)
{
    size_t total;
    if (HAK_UNLIKELY(__builtin_mul_overflow(count, size, &total))) {
        HAK_PROBE(os_oom, count, size, HAK_PT_META);
        errno = ENOMEM;
        return NULL;
    }
    return alloc_zeroed(total);
}

HAK_EXPORT void *realloc(void *p, size_t size)
{
    if (!p)
        return hak_alloc_inline(size);
    if (size == 0) { /* glibc's behaviour: free and return NULL */
        hak_free_inline(p);
        return NULL;
    }
    size_t old_usable;
    if (hak_ss_contains(p)) {
        old_usable = hak_small_usable_inline(p);
        /* In place while the request still fits and would not waste more
         * than half of the block. */
        if (size <= old_usable && size >= old_usable / 2)
            return p;
    } else if (hak_l25_contains(p)) {
        old_usable = hak_l25_usable(p); /* 0 unless a live block starts at p */
        if (old_usable == 0) {
            hak_report_misuse("realloc(): pointer not allocated by hakmem", p);
            errno = EINVAL;
            return NULL;
        }
        if (size > HAK_SMALL_MAX && hak_l25_serves(old_usable, size))
            return p;
        if (size > old_usable && size <= HAK_L25_MAX && hak_l25_grow(p, size))
            return p;
    } else if (hak_is_boot_ptr(p)) {
        old_usable = hak_boot_usable(p);
    } else {
        if (size > HAK_SMALL_MAX)
            return hak_large_realloc(p, size);
        old_usable = hak_large_usable(p);
        if (old_usable == 0) {
            hak_report_misuse("realloc(): pointer not allocated by hakmem", p);
            errno = EINVAL;
            return NULL;
        }
    }
    /* Growing into the L25 tier: the block gets its class's size, not its
     * length in pages, so that a buffer growing by small appends moves once
     * per class (a quarter), not once per page (bench realloc_growth). */
    size_t want = size;
    if (size > old_usable && size > HAK_SMALL_MAX && size <= HAK_L25_MAX) {
        want = hak_l25_class_size(hak_l25_class_of(size));
        if (want < size) /* the class table is filled after the boot arena's first blocks */
            want = size;
    }
    void *q = hak_alloc_inline(want);
    if (!q)
        return NULL; /* the old block stays valid */
    memcpy(q, p, old_usable < size ? old_usable : size);
    hak_free_inline(p);
    return q;
}

HAK_EXPORT void *reallocarray(void *p, size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, total);
}

HAK_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (!is_power_of_two(align) || align % sizeof(void *) != 0)
        return EINVAL;
    int saved = errno;
    void *p = alloc_aligned(size, align);
    if (!p) {
        errno = saved;
        return ENOMEM;
    }
    *out = p;
    return 0;
}

HAK_EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (!is_power_of_two(align)) {
        errno = EINVAL;
        return NULL;
    }
    return alloc_aligned(size, align);
}

/* glibc rounds a non-power-of-two alignment up instead of failing. */
HAK_EXPORT void *memalign(size_t align, size_t size)
{
    if (align > PTRDIFF_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!is_power_of_two(align))
        align = align ? (size_t)1 << (64 - __builtin_clzll(align)) : 1;
    return alloc_aligned(size, align);
}

HAK_EXPORT void *valloc(size_t size)
{
    return alloc_aligned(size, HAK_PAGE);
}

HAK_EXPORT void *pvalloc(size_t size)
{
    if (size > PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    return alloc_aligned(size ? hak_align_up(size, HAK_PAGE) : HAK_PAGE, HAK_PAGE);
}

HAK_EXPORT size_t malloc_usable_size(void *p)
{
    return p ? usable_size(p) : 0;
}

HAK_EXPORT int malloc_trim(size_t pad)
{
    (void)pad;
    hak_ensure_init();
    size_t released = hak_small_trim();
    released += hak_l25_trim();
    released += hak_large_trim();
    return released != 0;
}

/* hakmem is tuned through HAKMEM_* variables; glibc's knobs are accepted
 * (return 1, success) and have no effect. */
HAK_EXPORT int mallopt(int param, int value)
{
    (void)param;
    (void)value;
    return 1;
}

HAK_EXPORT struct mallinfo2 mallinfo2(void)
{
    struct hakmem_stats s;
    hakmem_stats_get(&s);
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof(mi));
    size_t ss_bytes = (size_t)s.superslabs * ((size_t)2 << 20);
    mi.arena = ss_bytes;             /* SuperSlab bytes mapped */
    mi.hblks = (size_t)s.large_live; /* live Large blocks */
    mi.hblkhd = (size_t)s.large_live_bytes;
    mi.fordblks = (size_t)s.purged_bytes; /* purged: free and not resident */
    mi.keepcost = (size_t)s.bigcache_bytes;
    size_t total = ss_bytes + mi.hblkhd;
    mi.uordblks = total > mi.fordblks ? total - mi.fordblks : 0;
    return mi;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
HAK_EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo mi;
    mi.arena = (int)m2.arena;
    mi.ordblks = (int)m2.ordblks;
    mi.smblks = (int)m2.smblks;
    mi.hblks = (int)m2.hblks;
    mi.hblkhd = (int)m2.hblkhd;
    mi.usmblks = (int)m2.usmblks;
    mi.fsmblks = (int)m2.fsmblks;
    mi.uordblks = (int)m2.uordblks;
    mi.fordblks = (int)m2.fordblks;
    mi.keepcost = (int)m2.keepcost;
    return mi;
}
#pragma GCC diagnostic pop

HAK_EXPORT void malloc_stats(void)
{
    hakmem_print_summary(2);
}

HAK_EXPORT int malloc_info(int options, FILE *fp)
{
    if (options != 0 || !fp) {
        errno = EINVAL;
        return -1;
    }
    struct hakmem_stats s;
    hakmem_stats_get(&s);
    fprintf(fp,
            "<malloc version=\"hakmem-1\">\n"
            "<heap nr=\"0\">\n"
            "<total type=\"superslab\" count=\"%llu\" size=\"%llu\"/>\n"
            "<total type=\"large\" count=\"%llu\" size=\"%llu\"/>\n"
            "<total type=\"bigcache\" size=\"%llu\"/>\n"
            "<total type=\"purged\" size=\"%llu\"/>\n"
            "</heap>\n"
            "<system type=\"current\" size=\"%llu\"/>\n"
            "</malloc>\n",
            (unsigned long long)s.superslabs, (unsigned long long)s.superslabs * (2ull << 20),
            (unsigned long long)s.large_live, (unsigned long long)s.large_live_bytes,
            (unsigned long long)s.bigcache_bytes, (unsigned long long)s.purged_bytes,
            (unsigned long long)s.mapped_bytes);
    return 0;
}

/* The names glibc's own code and a static link reach. */
#pragma GCC diagnostic ignored "-Wmissing-attributes"
#define HAK_ALIAS(name, target) HAK_EXPORT __typeof__(target) name __attribute__((alias(#target)))
HAK_ALIAS(__libc_malloc, malloc);
HAK_ALIAS(__libc_free, free);
HAK_ALIAS(__libc_calloc, calloc);
HAK_ALIAS(__libc_realloc, realloc);
HAK_ALIAS(__libc_memalign, memalign);
HAK_ALIAS(__libc_valloc, valloc);
HAK_ALIAS(__libc_pvalloc, pvalloc);
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
HAK_ALIAS(__libc_mallinfo, mallinfo);
HAK_ALIAS(__libc_mallopt, mallopt);
HAK_ALIAS(__posix_memalign, posix_memalign);
HAK_ALIAS(__malloc_trim, malloc_trim);
HAK_ALIAS(__malloc_usable_size, malloc_usable_size);

/* ---- hakmem's own API (hakmem.h) ---- */

HAK_EXPORT int hakmem_owns(const void *p)
{
    if (!p)
        return 0;
    if (hak_ss_contains(p))
        return hak_small_is_live(p);
    if (hak_l25_contains(p))
        return hak_l25_is_live(p);
    if (hak_is_boot_ptr(p))
        return 1;
    return hak_large_owns(p);
}

HAK_EXPORT enum hakmem_tier hakmem_tier_of(const void *p)
{
    if (!hakmem_owns(p))
        return HAKMEM_TIER_NONE;
    if (hak_ss_contains(p))
        return hak_small_usable(p) <= HAK_TINY_MAX ? HAKMEM_TIER_TINY : HAKMEM_TIER_MID;
    if (hak_l25_contains(p))
        return HAKMEM_TIER_L25;
    if (hak_is_boot_ptr(p))
        return HAKMEM_TIER_BOOT;
    return HAKMEM_TIER_LARGE;
}
