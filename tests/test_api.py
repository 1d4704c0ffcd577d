"""API conformance: one subtest per rule, each in its own process
(tests/c/api_*.c). Every block must be a live hakmem block (hakmem_owns),
and after each subtest glibc's own heap must still be untouched."""

import pytest

from conftest import check_subtest_list, run_subtest

PROGRAMS = {
    # Each entry point of the malloc API.
    "api_basic": [
        "malloc_free", "malloc_zero", "free_null", "calloc", "realloc", "reallocarray",
        "memalign", "posix_memalign", "aligned_alloc", "valloc", "pvalloc", "cfree",
        "free_sized", "free_aligned_sized", "usable_size", "malloc_trim", "mallopt",
        "mallinfo", "mallinfo2", "malloc_stats", "malloc_info", "libc_aliases",
        "owns_after_free", "symbols_are_hakmem",
    ],
    # Sizes 1..4096, powers of two to 64 MiB, alignments 1 B..4 MiB.
    "api_sizes": [
        "every_small_size", "powers_of_two", "align_posix_memalign", "align_aligned_alloc",
        "align_memalign", "align_mixed",
    ],
    # calloc zeroes reused blocks; realloc keeps contents across tiers.
    "api_contents": [
        "calloc_reuse_small", "calloc_reuse_large", "realloc_tiers", "realloc_chain",
        "realloc_small_steps", "realloc_null", "realloc_zero", "realloc_same",
    ],
    # NULL/ENOMEM, EINVAL, RLIMIT_AS.
    "api_errors": [
        "malloc_huge", "calloc_overflow", "reallocarray_overflow", "realloc_huge",
        "posix_memalign_huge", "aligned_huge", "posix_memalign_einval", "rlimit_large",
        "rlimit_small",
    ],
    # Memory glibc functions allocate for the program.
    "api_libc": [
        "strdup", "asprintf", "getline", "stdio_buffers", "dirs_and_paths", "scanf_ms",
        "backtrace_symbols", "qsort", "libc_internals",
    ],
}

CASES = [(prog, sub) for prog, subs in PROGRAMS.items() for sub in subs]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("program,subtest", CASES, ids=[f"{p}-{s}" for p, s in CASES])
def test_api(program, subtest):
    run_subtest(program, subtest, timeout=150)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_api_subtest_lists(program):
    check_subtest_list(program, PROGRAMS[program])
