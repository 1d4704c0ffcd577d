"""Large tier (tests/c/large_tier.c): 200 x 64 MiB and many 1-16 MiB cycles
keep RSS bounded; 2 MiB alignment for small and large requests; the
BigCache splits a larger cached mapping and merges neighbours back;
HAKMEM_THP's advice as the kernel sees it (VmFlags), under each policy;
realloc grows a block the BigCache made of two kernel regions."""

import pytest

from conftest import check_subtest_list, run_subtest

SUBTESTS = ["cycles_64m", "cycles_1_16m", "align_2m", "bigcache_split_merge", "thp", "realloc_across"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("subtest", SUBTESTS)
def test_large(subtest):
    run_subtest("large_tier", subtest, timeout=200)


@pytest.mark.timeout(240)
def test_large_small_bigcache():
    """The RSS bounds of cycles_1_16m follow HAKMEM_BIGCACHE_MAX_MB: with a
    16 MiB cache, at most 32 MiB stay resident besides the live blocks."""
    run_subtest("large_tier", "cycles_1_16m", env={"HAKMEM_BIGCACHE_MAX_MB": "16"}, timeout=200)


@pytest.mark.parametrize("policy", ["off", "auto", "on"])
def test_large_thp(policy):
    run_subtest("large_tier", "thp", env={"HAKMEM_THP": policy}, timeout=60)


def test_large_subtest_list():
    check_subtest_list("large_tier", SUBTESTS)
