/* mixed_small: small objects (8 B - 1 KiB, hakmem's Tiny tier) under random
 * replacement in a working set of 4096 blocks per thread, sizes log-uniform.
 * The glibc-simple / alloc-test style of load. Run with several threads too:
 * each thread owns its working set, so this shows how thread caches scale. */
#include "bench_common.h"

int main(int argc, char **argv)
{
    static const struct mixed_spec spec = {"mixed_small", 8, 1024, 4096, 60000000ULL};
    return mixed_main(&spec, argc, argv);
}
