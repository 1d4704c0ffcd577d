/* mixed_large: 1 - 16 MiB objects (hakmem's Large tier) under random
 * replacement in a working set of 16 blocks, sizes log-uniform, ~85 MiB
 * live. Few ops: this measures mmap/munmap and page-fault churn against the
 * caching of big blocks (hakmem's BigCache, jemalloc's retained extents). */
#include "bench_common.h"

int main(int argc, char **argv)
{
    static const struct mixed_spec spec = {"mixed_large", 1048576, 16777216, 16, 4000ULL};
    return mixed_main(&spec, argc, argv);
}
