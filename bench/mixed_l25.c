/* mixed_l25: 32 KiB - 1 MiB objects (hakmem's L2.5 tier) under random
 * replacement in a working set of 128 blocks, sizes log-uniform, ~36 MiB
 * live. Every page of every block is touched, so an allocator that returns
 * memory to the OS and faults it back in on each cycle pays for it here. */
#include "bench_common.h"

int main(int argc, char **argv)
{
    static const struct mixed_spec spec = {"mixed_l25", 32768, 1048576, 128, 300000ULL};
    return mixed_main(&spec, argc, argv);
}
