/* mixed_mid: medium objects (1 - 32 KiB, hakmem's Mid tier) under random
 * replacement in a working set of 1024 blocks, sizes log-uniform. About
 * 9 MiB stay live, more than thread caches hold, so the central free lists
 * and the reuse of partly empty slabs are what is measured. */
#include "bench_common.h"

int main(int argc, char **argv)
{
    static const struct mixed_spec spec = {"mixed_mid", 1024, 32768, 1024, 10000000ULL};
    return mixed_main(&spec, argc, argv);
}
