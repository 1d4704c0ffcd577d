/* hk_api.h — hakmem's own API (include/hakmem.h) for the test programs,
 * which are not linked with hakmem: found with dlsym, and checked to come
 * from libhakmem (HAKMEM_SYMBOL in check.h). In glibc mode (HKTEST_GLIBC=1)
 * nothing is looked up: hk_have_api() is 0 and the callers skip their
 * hakmem-only checks. Include after check.h. */
#ifndef HKTEST_HK_API_H
#define HKTEST_HK_API_H

#include "hakmem.h"

typedef void (*hk_stats_get_fn)(struct hakmem_stats *);
typedef enum hakmem_tier (*hk_tier_of_fn)(const void *);

static hk_stats_get_fn hk_stats_fn;
static hk_tier_of_fn hk_tier_fn;
static int hk_api_looked;

/* Resolve once (call it before starting threads). */
static int hk_have_api(void) CHECK_UNUSED;
static int hk_have_api(void)
{
    if (!hk_api_looked) {
        hk_api_looked = 1;
        if (!hk_glibc_mode()) {
            hk_stats_fn = (hk_stats_get_fn)HAKMEM_SYMBOL("hakmem_stats_get");
            hk_tier_fn = (hk_tier_of_fn)HAKMEM_SYMBOL("hakmem_tier_of");
            REQUIRE(hk_stats_fn && hk_tier_fn, "hakmem_stats_get / hakmem_tier_of not found");
        }
    }
    return hk_stats_fn != NULL;
}

/* hakmem's counters; all zero in glibc mode. */
static struct hakmem_stats hk_stats(void) CHECK_UNUSED;
static struct hakmem_stats hk_stats(void)
{
    struct hakmem_stats s;
    memset(&s, 0, sizeof s);
    if (hk_have_api())
        hk_stats_fn(&s);
    return s;
}

/* hakmem_tier_of(p); -1 in glibc mode. */
static int hk_tier(const void *p) CHECK_UNUSED;
static int hk_tier(const void *p)
{
    return hk_have_api() ? (int)hk_tier_fn(p) : -1;
}

static const char *hk_tier_name(int tier) CHECK_UNUSED;
static const char *hk_tier_name(int tier)
{
    static const char *const names[] = {"NONE", "TINY", "MID", "L25", "LARGE", "BOOT"};
    return tier >= 0 && tier <= 5 ? names[tier] : "?";
}

/* An integer from the environment (the pytest side passes workload sizes
 * this way), or `dflt`. */
static long env_long(const char *name, long dflt) CHECK_UNUSED;
static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}

/* The size classes of the SuperSlab tiers, replicated from the design
 * (src/tiny.c hak_class_size): 8, 16, then 16-byte steps to 128, four
 * classes per doubling up to 1 KiB (the Tiny tier), and four per doubling
 * from 1 KiB to 32 KiB. */
static const uint32_t hk_classes[] = {
    8,    16,   32,   48,   64,   80,    96,    112,   128,   160,   192,   224,   256,   320,
    384,  448,  512,  640,  768,  896,   1024,  1280,  1536,  1792,  2048,  2560,  3072,  3584,
    4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
};
#define HK_NUM_CLASSES (sizeof hk_classes / sizeof hk_classes[0])

/* The smallest class >= size (size 1..32768). */
static size_t hk_class_for(size_t size) CHECK_UNUSED;
static size_t hk_class_for(size_t size)
{
    for (size_t c = 0; c < HK_NUM_CLASSES; c++)
        if (hk_classes[c] >= size)
            return hk_classes[c];
    return 0;
}

#endif
