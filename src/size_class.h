/* Size classes of the SuperSlab tiers.
 *
 * Tiny (<= 1 KiB) keeps the seed's eight configuration bands C0..C7
 * (<= 8, 16, 32, 64, 128, 256, 512, 1024 B); inside a band the classes
 * are finer (16 B steps to 128 B, then four per doubling) so that no
 * request wastes more than ~20 % of its block. Every per-class knob
 * (HAKMEM_TINY_MAG_CAP_C3, ...) addresses a band and applies to all of
 * its classes. 1-32 KiB continues with four classes per doubling. */
#ifndef HAKMEM_SIZE_CLASS_H
#define HAKMEM_SIZE_CLASS_H

#include "hakmem_internal.h"

#define HAK_NUM_CLASSES 41
#define HAK_NUM_TINY_CLASSES 21 /* classes 0..20 are <= 1 KiB */
#define HAK_NUM_BANDS 8

extern const uint32_t hak_class_size[HAK_NUM_CLASSES];
extern const uint8_t hak_small_class_lut[(HAK_TINY_MAX >> 3) + 1];
extern const uint16_t hak_small_bin_lut[HAK_TINY_MAX + 8];
/* Class of each 256-byte step of 1-32 KiB, indexed by (size - 1) >> 8:
 * four classes per doubling above 1 KiB (1280, 1536, 1792, 2048, 2560,
 * ...) are all multiples of 256. One load instead of the ten instructions
 * of a bit scan (bench mixed_mid, callgrind). */
extern const uint8_t hak_mid_class_lut[HAK_SMALL_MAX >> 8];

static inline unsigned hak_size_to_class(size_t size)
{
    if (HAK_LIKELY(size <= HAK_TINY_MAX))
        return hak_small_class_lut[(size + 7) >> 3];
    return hak_mid_class_lut[(size - 1) >> 8];
}

/* The configuration band (C0..C7) of a Tiny class. */
static inline unsigned hak_class_band(unsigned class_index)
{
    uint32_t size = hak_class_size[class_index];
    if (size <= 8)
        return 0;
    unsigned log2_ceil = 32u - (unsigned)__builtin_clz(size - 1);
    return log2_ceil - 3u > 7u ? 7u : log2_ceil - 3u;
}

#endif
