"""fork() while other threads hold thread caches and own slabs: the child
hands their heaps back, and its own new threads (which reuse the dead
threads' stacks, so their thread pointers) never take those slabs for
their own (tests/c/fork_heaps.c)."""

import pytest

from conftest import check_subtest_list, run_subtest

SUBTESTS = ["fork_with_cached_heaps"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("subtest", SUBTESTS)
def test_fork_heaps(subtest):
    # Counts SuperSlabs before and after: without the decay thread, whose
    # creation in the child (by whichever thread first reaches a slow path)
    # leaves its thread's TLS array live in a slab of that thread, now and
    # then a second SuperSlab when the creator was a worker that exited.
    run_subtest("fork_heaps", subtest, env={"HAKMEM_DECAY_THREAD": "0"}, timeout=100)


def test_fork_heaps_subtest_list():
    check_subtest_list("fork_heaps", SUBTESTS)
