/* Storage for the probe semaphores declared in probes.h. The kernel
 * increments a semaphore while a tracer is attached to its probe. */
#include "probes.h"

#if HAKMEM_USDT
#define HAK_PROBE_DEFINE_SEMAPHORE(name, nargs) \
    __attribute__((section(".probes"), used)) volatile unsigned short hakmem_##name##_semaphore;
HAK_PROBES(HAK_PROBE_DEFINE_SEMAPHORE)
#undef HAK_PROBE_DEFINE_SEMAPHORE
#else
/* ISO C forbids an empty translation unit. */
typedef int hak_probes_compiled_out;
#endif
