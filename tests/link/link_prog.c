/* link_prog — linked with hakmem instead of preloading it: built by
 * tests/test_link.py against libhakmem.so (-lhakmem) and against
 * libhakmem.a, then run without LD_PRELOAD. Its allocations, and those glibc
 * makes for it (strdup, stdio), must be hakmem's, and glibc's own heap must
 * stay unused. Calls the hakmem API directly, which a linked program can. */
#include "check.h"
#include "hakmem.h"

#define OWNED(p) CHECK(hakmem_owns(p), "%s = %p is not a hakmem block", #p, (const void *)(p))

static int maps_mention(const char *needle)
{
    FILE *fp = fopen("/proc/self/maps", "r");
    REQUIRE(fp, "fopen /proc/self/maps failed");
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, fp))
        found |= strstr(line, needle) != NULL;
    fclose(fp);
    return found;
}

int main(void)
{
    check_current = "link";
    const char *version = hakmem_version();
    REQUIRE(version && *version, "hakmem_version() is empty");
    printf("version: %s\n", version);

    char *a = malloc(100);
    char *s = strdup("strdup from libc"); /* malloc called inside libc */
    void *z = calloc(100, 100);
    void *al = aligned_alloc(4096, 10000);
    void *big = malloc(8 << 20);
    char *fmt = NULL;
    REQUIRE(a && s && z && al && big, "an allocation failed");
    REQUIRE(asprintf(&fmt, "%s-%d", "asprintf", 42) > 0, "asprintf failed");
    FILE *fp = fopen("/proc/self/status", "r");
    REQUIRE(fp, "fopen failed");
    char line[256];
    REQUIRE(fgets(line, sizeof line, fp), "fgets failed");
    OWNED(a);
    OWNED(s);
    OWNED(z);
    OWNED(al);
    OWNED(big);
    OWNED(fmt);
    OWNED(fp);
    OWNED(fp->_IO_buf_base);
    CHECK(hakmem_tier_of(a) != HAKMEM_TIER_NONE, "hakmem_tier_of(malloc(100)) is NONE");
    CHECK(hakmem_tier_of(big) != HAKMEM_TIER_NONE, "hakmem_tier_of(malloc(8 MiB)) is NONE");
    CHECK(hakmem_tier_of(&line) == HAKMEM_TIER_NONE, "a stack address has a hakmem tier");

    struct hakmem_stats st;
    memset(&st, 0, sizeof st);
    hakmem_stats_get(&st);
    CHECK(st.mapped_bytes >= (8u << 20), "hakmem_stats.mapped_bytes = %llu with 8 MiB live",
          (unsigned long long)st.mapped_bytes);

    fclose(fp);
    free(a);
    free(s);
    free(z);
    free(al);
    free(big);
    free(fmt);
    glibc_heap_report(__FILE__, __LINE__);
    printf("maps: libhakmem.so %s\n", maps_mention("libhakmem.so") ? "present" : "absent");
    printf("%s\n", check_failures ? "FAILED" : "ok link");
    return check_failures ? 1 : 0;
}
