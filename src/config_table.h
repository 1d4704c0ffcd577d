/* Every HAKMEM_* variable, declared once. Parsing, validation, the
 * "hakmem config" output and docs/CONFIG.md all come from this table.
 *
 * X(id, type, default, min, max, words, effect, doc)
 *   type     HAK_T_BOOL | HAK_T_INT | HAK_T_SIZE (bytes, K/M/G suffixes)
 *            | HAK_T_DOUBLE | HAK_T_ENUM | HAK_T_LIST (comma-separated
 *            integers) | HAK_T_STRING | HAK_T_REMOVED
 *   default  the default as the user would write it; "" means unset
 *            (unlimited / class default), documented in doc
 *   min,max  inclusive range for INT, SIZE, DOUBLE and each LIST item
 *   words    "a|b|c" for ENUM (the default must be one of them)
 *   effect   "now" when it acts in this build, otherwise the tier or
 *            feature that will act on it (it is parsed and validated now)
 *
 * The id becomes the variable name: HAKMEM_<id>. Per-class variables of
 * the Tiny bands C0..C7 are written out by HAK_PER_CLASS. */
#ifndef HAKMEM_CONFIG_TABLE_H
#define HAKMEM_CONFIG_TABLE_H

#define HAK_PER_CLASS(X, base, type, def, lo, hi, effect, doc)           \
    X(base##_C0, type, def, lo, hi, NULL, effect, doc " (C0: <= 8 B)")   \
    X(base##_C1, type, def, lo, hi, NULL, effect, doc " (C1: <= 16 B)")  \
    X(base##_C2, type, def, lo, hi, NULL, effect, doc " (C2: <= 32 B)")  \
    X(base##_C3, type, def, lo, hi, NULL, effect, doc " (C3: <= 64 B)")  \
    X(base##_C4, type, def, lo, hi, NULL, effect, doc " (C4: <= 128 B)") \
    X(base##_C5, type, def, lo, hi, NULL, effect, doc " (C5: <= 256 B)") \
    X(base##_C6, type, def, lo, hi, NULL, effect, doc " (C6: <= 512 B)") \
    X(base##_C7, type, def, lo, hi, NULL, effect, doc " (C7: <= 1 KiB)")

#define HAK_HOT_CLASS(X, base, type, def, lo, hi, effect, doc)          \
    X(base##_C0, type, def, lo, hi, NULL, effect, doc " (C0: <= 8 B)")  \
    X(base##_C1, type, def, lo, hi, NULL, effect, doc " (C1: <= 16 B)") \
    X(base##_C2, type, def, lo, hi, NULL, effect, doc " (C2: <= 32 B)") \
    X(base##_C3, type, def, lo, hi, NULL, effect, doc " (C3: <= 64 B)")

#define HAK_REMOVED_CLASS(X, base)                                                \
    X(base##_C0, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12.") \
    X(base##_C1, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12.") \
    X(base##_C2, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12.") \
    X(base##_C3, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12.") \
    X(base##_C4, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12.") \
    X(base##_C5, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12.") \
    X(base##_C6, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12.") \
    X(base##_C7, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12.")

#define HAK_W_POOL "Mid/L25 pools"
#define HAK_W_ADAPT "adaptive control"
#define HAK_W_OBS "in-process observability"

/* clang-format off */
#define HAK_CONFIG_TABLE(X)                                                                          \
    /* 1. Tiny core */                                                                               \
    X(WRAP_TINY, HAK_T_BOOL, "1", 0, 1, NULL, "now",                                                 \
      "Serve requests of <= 1 KiB from the Tiny tier; 0 routes them to the next tier.")              \
    X(WRAP_TINY_REFILL, HAK_T_BOOL, "0", 0, 1, NULL, "no-op",                                        \
      "Accepted, no effect: hakmem's Tiny tier takes no lock a re-entrant call could try; a "        \
      "re-entered Tiny tier is served by the Large tier (tiny_fallback reason 3).")                  \
    X(TINY_USE_SUPERSLAB, HAK_T_BOOL, "1", 0, 1, NULL, "now",                                        \
      "Back the Tiny tier with SuperSlabs; 0 leaves it no slabs, so every Tiny request falls back.") \
    /* 2. Tiny TLS caching */                                                                        \
    X(TINY_MAG_CAP, HAK_T_INT, "", 1, 65536, NULL, "now",                                            \
      "Thread-cache capacity (blocks) for every Tiny class; unset = per-class default.")             \
    HAK_PER_CLASS(X, TINY_MAG_CAP, HAK_T_INT, "", 1, 65536, "now",                                   \
      "Thread-cache capacity (blocks) for one class; overrides HAKMEM_TINY_MAG_CAP")                 \
    X(TINY_TLS_SLL, HAK_T_BOOL, "1", 0, 1, NULL, "now",                                              \
      "Keep the per-thread singly linked free list in front of the magazines; 0 = magazine only "    \
      "(served from the slow path: slower, see README).")                                            \
    X(SLL_MULTIPLIER, HAK_T_INT, "2", 1, 16, NULL, "now",                                            \
      "SLL capacity = magazine capacity x this, for the small classes C0..C3.")                      \
    X(TINY_REFILL_MAX, HAK_T_INT, "64", 1, 4096, NULL, "now",                                        \
      "Blocks moved into a thread cache per refill (classes above 64 B).")                           \
    X(TINY_REFILL_MAX_HOT, HAK_T_INT, "192", 1, 4096, NULL, "now",                                   \
      "Blocks per refill for the hot classes (<= 64 B, C0..C3).")                                    \
    HAK_PER_CLASS(X, TINY_REFILL_MAX, HAK_T_INT, "", 1, 4096, "now",                                 \
      "Blocks per refill for one class; overrides HAKMEM_TINY_REFILL_MAX")                           \
    HAK_HOT_CLASS(X, TINY_REFILL_MAX_HOT, HAK_T_INT, "", 1, 4096, "now",                             \
      "Blocks per refill for one hot class; overrides HAKMEM_TINY_REFILL_MAX_HOT")                   \
    /* 3. SuperSlab */                                                                               \
    X(TINY_SS_MAX_MB, HAK_T_INT, "", 1, 1048576, NULL, "now",                                        \
      "Cap on SuperSlab memory (MiB); reached, small requests fall back to the next tier. Unset = no cap.") \
    X(TINY_SS_MIN_MB, HAK_T_INT, "0", 0, 1048576, NULL, "now",                                       \
      "SuperSlab memory (MiB) kept mapped even when empty (neither HAKMEM_TINY_TRIM_SS nor malloc_trim unmaps it).") \
    X(TINY_SS_RESERVE, HAK_T_BOOL, "0", 0, 1, NULL, "now",                                           \
      "Map HAKMEM_TINY_SS_MIN_MB of SuperSlabs at start-up.")                                        \
    X(TINY_DECAY_MS, HAK_T_INT, "1000", 0, 3600000, NULL, "now",                                     \
      "New in hakmem: a free slab's pages are purged once it has been free this long (sooner past 1 MiB + 1/16 of the " \
      "slab memory in use of such pages, or at malloc_trim); 0 purges at release.")                  \
    X(TINY_TRIM_SS, HAK_T_BOOL, "1", 0, 1, NULL, "now",                                              \
      "Unmap empty SuperSlabs. Default 1 (the seed had 0): an empty SuperSlab held forever is the 9 GB RSS failure.") \
    X(TINY_SS_PARTIAL, HAK_T_BOOL, "1", 0, 1, NULL, "now",                                           \
      "Adopt partially used slabs of exited threads before carving new ones. Default 1 (the seed had 0): it keeps RSS near the live set.") \
    X(TINY_SS_PARTIAL_INTERVAL, HAK_T_INT, "1000000", 1, 2147483647, NULL, "now",                    \
      "Blocks a thread takes from slabs between sweeps of abandoned slabs (take in their remote frees, return the empty ones).") \
    /* 4. Remote free */                                                                             \
    X(TINY_REMOTE_DRAIN_THRESHOLD, HAK_T_INT, "32", 1, 65536, NULL, "now",                           \
      "Remote frees queued on a full slab that make its owner drain them at its next check, "        \
      "before it runs out of blocks.")                                                               \
    X(TINY_REMOTE_DRAIN_TRYRATE, HAK_T_INT, "16", 1, 65536, NULL, "now",                             \
      "The owner checks for slabs past the threshold on 1 in N misses of its thread cache.")         \
    /* 5. Statistics and profiling */                                                                \
    X(TINY_STAT_RATE_LG, HAK_T_INT, "0", 0, 30, NULL, HAK_W_OBS,                                     \
      "STATS=1 builds: count 1 in 2^N fast-path events (0 = every event).")                          \
    X(TINY_COUNT_SAMPLE, HAK_T_REMOVED, "", 0, 0, NULL, "removed",                                   \
      "Deprecated by the seed (replaced by batched statistics); ignored.")                           \
    X(TINY_PATH_DEBUG, HAK_T_BOOL, "0", 0, 1, NULL, "now",                                           \
      "COUNTERS=1 builds: dump the path counters at exit.")                                          \
    /* 6. ACE */                                                                                     \
    X(ACE_ENABLED, HAK_T_BOOL, "0", 0, 1, NULL, HAK_W_ADAPT, "Enable the adaptive control engine.")  \
    X(ACE_OBSERVE, HAK_T_BOOL, "0", 0, 1, NULL, HAK_W_ADAPT, "Log ACE observations.")                \
    X(ACE_DEBUG, HAK_T_BOOL, "0", 0, 1, NULL, HAK_W_ADAPT, "Log ACE internal state.")                \
    X(ACE_SAMPLE, HAK_T_INT, "", 1, 1048576, NULL, HAK_W_ADAPT,                                      \
      "Sample 1 in N ACE events; unset = no sampling.")                                              \
    X(ACE_LOG_LEVEL, HAK_T_INT, "0", 0, 3, NULL, HAK_W_ADAPT,                                        \
      "ACE verbosity: 0 off, 1 errors, 2 info, 3 debug.")                                            \
    X(ACE_FAST_INTERVAL_MS, HAK_T_INT, "100", 1, 3600000, NULL, HAK_W_ADAPT,                         \
      "Fast ACE update interval (ms).")                                                              \
    X(ACE_SLOW_INTERVAL_MS, HAK_T_INT, "1000", 1, 3600000, NULL, HAK_W_ADAPT,                        \
      "Slow ACE update interval (ms).")                                                              \
    /* 7. Intelligence engine */                                                                     \
    X(INT_ENGINE, HAK_T_BOOL, "0", 0, 1, NULL, HAK_W_ADAPT,                                          \
      "Enable the background adaptation engine.")                                                    \
    X(INT_ADAPT_REFILL, HAK_T_BOOL, "1", 0, 1, NULL, HAK_W_ADAPT,                                    \
      "With INT_ENGINE: adapt refill sizes (+-16) to the miss rate.")                                \
    X(INT_ADAPT_CAPS, HAK_T_BOOL, "1", 0, 1, NULL, HAK_W_ADAPT,                                      \
      "With INT_ENGINE: grow hot classes' caches, shrink cold ones (+-16/+-32).")                    \
    X(INT_EVENT_TS, HAK_T_BOOL, "0", 0, 1, NULL, HAK_W_ADAPT,                                        \
      "Timestamp INT events (costs a clock_gettime each).")                                          \
    X(INT_SAMPLE, HAK_T_INT, "", 0, 30, NULL, HAK_W_ADAPT,                                           \
      "Sample INT events at 1/2^N; unset = every event.")                                            \
    /* 8. Frontend experiments */                                                                    \
    X(TINY_FRONTEND, HAK_T_BOOL, "0", 0, 1, NULL, "now",                                             \
      "A/B: mimalloc-style front: blocks come from and go straight back to the owned slab's free "   \
      "list (no SLL, no magazine). Same as HAKMEM_TINY_FASTCACHE=1. Slower (README).")               \
    X(TINY_FASTCACHE, HAK_T_BOOL, "0", 0, 1, NULL, "now", "A/B: the switch behind HAKMEM_TINY_FRONTEND.") \
    X(TINY_QUICK, HAK_T_BOOL, "0", 0, 1, NULL, "now",                                                \
      "A/B: six-item single-cache-line stack instead of the SLL for <= 64 B. Slower (README).")      \
    X(TINY_HOTMAG, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12.")                  \
    X(TINY_HOTMAG_CAP, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12 (fixed 128).")  \
    X(TINY_HOTMAG_REFILL, HAK_T_REMOVED, "", 0, 0, NULL, "removed", "Removed in 2025-12 (fixed 32).") \
    HAK_REMOVED_CLASS(X, TINY_HOTMAG)                                                                \
    /* 9. Routing */                                                                                 \
    X(TINY_PROFILE, HAK_T_ENUM, "conservative", 0, 0, "conservative|hot|off|full", "now",            \
      "Per-band routing: conservative = Tiny first for C0..C7; hot = C0..C3 Tiny only, C7 pool; "    \
      "off = pools only; full = Tiny only.")                                                         \
    /* 10. SuperSlab tiering */                                                                      \
    X(SS_TIER_DOWN_THRESHOLD, HAK_T_DOUBLE, "0.25", 0, 1, NULL, "now",                               \
      "Slabs in use / usable slabs at or below which a SuperSlab goes HOT -> DRAINING: carved only " \
      "when no HOT one has a free slab, so it can empty and be unmapped.")                           \
    X(SS_TIER_UP_THRESHOLD, HAK_T_DOUBLE, "0.50", 0, 1, NULL, "now",                                 \
      "Utilisation at or above which a DRAINING SuperSlab returns to HOT (must exceed DOWN).")       \
    /* 11. Memory efficiency */                                                                      \
    X(TINY_RSS_BUDGET_KB, HAK_T_INT, "", 1, 2147483647, NULL, "now",                                 \
      "Resident budget (KiB); above it caches shrink and free memory is purged. Unset = none.")      \
    X(TINY_INT_TIGHT, HAK_T_BOOL, "0", 0, 1, NULL, HAK_W_ADAPT, "Bias INT toward memory reduction.") \
    X(TINY_DIET_STEP, HAK_T_INT, "16", 1, 4096, NULL, "now",                                         \
      "Cache-capacity reduction per diet step when over budget.")                                    \
    HAK_PER_CLASS(X, TINY_CAP_FLOOR, HAK_T_INT, "", 0, 65536, "now",                                 \
      "Floor under which the diet never shrinks this class's cache (unset = 1)")                     \
    X(TINY_MEM_DIET, HAK_T_BOOL, "0", 0, 1, NULL, "now",                                             \
      "Trade speed for footprint: half-size thread caches, no empty slab kept, purge at once.")      \
    X(TINY_SPILL_HYST, HAK_T_INT, "0", 0, 65536, NULL, "now",                                        \
      "Extra blocks a thread cache may hold past capacity before it spills.")                        \
    /* 12. Learning and pools */                                                                     \
    X(LEARN, HAK_T_BOOL, "", 0, 1, NULL, HAK_W_ADAPT,                                                \
      "Learner thread on/off; unset = on only in HAKMEM_MODE=learning or research.")                 \
    X(WMAX_MID, HAK_T_SIZE, "256K", 4096, 1099511627776, NULL, "now",                                \
      "Mid pool: bytes of a 1-32 KiB class in a thread's magazine, as many in its SLL (K/M/G).")      \
    X(WMAX_LARGE, HAK_T_SIZE, "2M", 4096, 1099511627776, NULL, "now",                                \
      "L25 pool: bytes of freed 32 KiB-1 MiB blocks a thread caches (K/M/G suffixes).")              \
    X(CAP_MID, HAK_T_INT, "", 0, 2147483647, NULL, "now",                                            \
      "Mid-pool capacity (blocks of slab room); past it the Large tier serves; 0 = off.")            \
    X(CAP_LARGE, HAK_T_INT, "", 0, 2147483647, NULL, "now",                                          \
      "L25-pool capacity (blocks out); past it the Large tier serves; 0 = off.")                     \
    X(WMAX_LEARN, HAK_T_BOOL, "0", 0, 1, NULL, HAK_W_ADAPT, "Learn WMAX from the hit rate.")         \
    X(WMAX_CANDIDATES_MID, HAK_T_LIST, "128,256,512,1024", 1, 1048576, NULL, HAK_W_ADAPT,            \
      "Candidate Mid WMAX values (KiB, comma-separated).")                                           \
    X(WMAX_CANDIDATES_LARGE, HAK_T_LIST, "1024,2048,4096,8192", 1, 1048576, NULL, HAK_W_ADAPT,       \
      "Candidate L25 WMAX values (KiB, comma-separated).")                                           \
    X(WMAX_ADOPT_PCT, HAK_T_DOUBLE, "0.01", 0, 1, NULL, HAK_W_ADAPT,                                 \
      "Improvement needed to adopt a WMAX candidate (fraction).")                                    \
    X(TARGET_HIT_MID, HAK_T_DOUBLE, "0.65", 0, 1, NULL, HAK_W_ADAPT, "Target Mid hit rate.")         \
    X(TARGET_HIT_LARGE, HAK_T_DOUBLE, "0.55", 0, 1, NULL, HAK_W_ADAPT, "Target L25 hit rate.")       \
    X(GAIN_W_MISS, HAK_T_DOUBLE, "1.0", 0, 1000, NULL, HAK_W_ADAPT, "Learning weight of a miss.")    \
    /* 13. THP */                                                                                    \
    X(THP, HAK_T_ENUM, "auto", 0, 0, "off|auto|on", "now",                                           \
      "Huge pages for Large blocks: off = MADV_NOHUGEPAGE; auto = MADV_HUGEPAGE from 2 MiB; "        \
      "on = MADV_HUGEPAGE from 1 MiB.")                                                              \
    X(THP_LEARN, HAK_T_BOOL, "0", 0, 1, NULL, HAK_W_ADAPT, "Learn the THP policy.")                  \
    X(THP_CANDIDATES, HAK_T_STRING, "off,auto,on", 0, 0, NULL, HAK_W_ADAPT,                          \
      "THP policies the learner may choose from (comma-separated).")                                 \
    X(THP_ADOPT_PCT, HAK_T_DOUBLE, "0.015", 0, 1, NULL, HAK_W_ADAPT,                                 \
      "Improvement needed to switch THP policy (fraction).")                                         \
    /* 14. L2/L25 pools */                                                                           \
    X(WRAP_L2, HAK_T_BOOL, "0", 0, 1, NULL, "no-op", "Accepted, no effect: re-entered calls always go to the Large tier.") \
    X(WRAP_L25, HAK_T_BOOL, "0", 0, 1, NULL, "no-op", "Accepted, no effect: re-entered calls always go to the Large tier.") \
    X(POOL_TLS_FREE, HAK_T_BOOL, "1", 0, 1, NULL, "now", "Per-thread free lists for the Mid pool.")  \
    X(POOL_TLS_RING, HAK_T_BOOL, "1", 0, 1, NULL, "now",                                             \
      "TLS ring batching returns from other threads to the Mid pool.")                               \
    X(POOL_MIN_BUNDLE, HAK_T_INT, "4", 1, 1024, NULL, "now", "Minimum Mid-pool refill bundle.")      \
    X(L25_MIN_BUNDLE, HAK_T_INT, "4", 1, 1024, NULL, "now", "Blocks per L25 refill (extra ones to the thread cache).") \
    X(L25_DZ, HAK_T_LIST, "64,256", 1, 1048576, NULL, "now", "L25 size zones (KiB) for the growth step.") \
    X(L25_RUN_BLOCKS, HAK_T_INT, "16", 1, 4096, NULL, "now", "L25 growth: room for this many blocks.") \
    X(L25_RUN_FACTOR, HAK_T_INT, "2", 1, 64, NULL, "now", "L25 growth: this many times fewer per zone.") \
    /* Large tier (new in hakmem: the seed had no BigCache knobs) */                                 \
    X(BIGCACHE_MAX_MB, HAK_T_INT, "256", 0, 1048576, NULL, "now",                                    \
      "Bytes (MiB) of freed Large mappings kept for reuse; 0 disables the BigCache. "                \
      "A block above a quarter of it is never cached.")                                              \
    X(BIGCACHE_DECAY_MS, HAK_T_INT, "1000", 0, 3600000, NULL, "now",                                 \
      "A cached Large mapping unused this long is unmapped (by the decay thread or the next call).")            \
    X(DECAY_THREAD, HAK_T_BOOL, "1", 0, 1, NULL, "now",                                               \
      "Purge idle free memory from a background thread (new in hakmem): 0 = only from allocation calls.") \
    /* 15. Debugging */                                                                              \
    X(VERBOSE, HAK_T_INT, "0", 0, 3, NULL, "now",                                                    \
      "1: effective configuration at start and a per-tier summary at exit; 2-3: more detail.")       \
    X(QUIET, HAK_T_BOOL, "0", 0, 1, NULL, "now", "Silence every warning (overrides VERBOSE).")       \
    X(TIMING, HAK_T_BOOL, "0", 0, 1, NULL, "now", "Slow-path latency histograms (refill, pools, mmap), printed at exit.")                   \
    X(HIST_SAMPLE, HAK_T_INT, "0", 0, 30, NULL, "now",                                               \
      "Size histogram from one slow-path event in 2^(N-1), printed at exit; 0 = off.")    \
    X(PROF, HAK_T_BOOL, "0", 0, 1, NULL, "now",                                                      \
      "Sampled-allocation profile at exit: bytes allocated and not freed, by tier and size.")                               \
    X(PROF_SAMPLE, HAK_T_INT, "0", 0, 1000000, NULL, "no-op",                                        \
      "Accepted, no effect: HAKMEM_SAMPLE_BYTES sets how often allocations are sampled.")                 \
    X(SAMPLE_BYTES, HAK_T_SIZE, "512K", 4096, 1099511627776, NULL, "now",                              \
      "Sampled allocations (probes sample_*, HAKMEM_PROF): one per this many bytes allocated (new in hakmem).")   \
    X(LOG_FILE, HAK_T_STRING, "", 0, 0, NULL, "now",                                                 \
      "Write hakmem's messages to this file (appended) instead of stderr.")                          \
    /* 16. Modes */                                                                                  \
    X(MODE, HAK_T_ENUM, "balanced", 0, 0, "minimal|fast|balanced|learning|research", "now",          \
      "Preset: minimal = no caches (BigCache off, smallest thread caches); fast = larger caches; "   \
      "balanced = default; learning = LEARN on; research = LEARN on + VERBOSE=1.")                   \
    X(PRESET, HAK_T_STRING, "", 0, 0, NULL, HAK_W_ADAPT, "Name of an evolution preset.")             \
    X(FREE_POLICY, HAK_T_ENUM, "batch", 0, 0, "batch|keep|adaptive", "now",                          \
      "batch: spill thread caches in batches (default); keep: spill only at thread exit or trim "    \
      "(fastest, most memory); adaptive: batch (until adaptive control lands).")
/* clang-format on */

#endif
