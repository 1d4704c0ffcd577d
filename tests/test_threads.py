"""Threads and fork (tests/c/threads_fork.c): fork while 4 threads allocate
(50 children, each allocating and starting a thread), 3000 short threads,
memory freed by exiting threads, blocks freed on another thread. RSS
bounds are generous ratios, never timings."""

import pytest

from conftest import check_subtest_list, run_subtest

SUBTESTS = ["fork_while_allocating", "thread_churn", "thread_exit_returns_cache",
            "cross_thread_free"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("subtest", SUBTESTS)
def test_threads(subtest):
    run_subtest("threads_fork", subtest, timeout=200)


def test_threads_subtest_list():
    check_subtest_list("threads_fork", SUBTESTS)
