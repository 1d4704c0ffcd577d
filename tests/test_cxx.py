"""C++: the 8 operator new and 12 operator delete forms, bad_alloc, the
new-handler protocol, nothrow failures, containers across threads
(tests/c/cxx_ops.cc)."""

import pytest

from conftest import check_subtest_list, run_subtest

SUBTESTS = [
    "new_forms", "delete_forms", "bad_alloc", "new_handler", "new_handler_reserve", "nothrow",
    "nothrow_handler", "containers_threads", "thread_local_dtor", "operators_are_hakmem",
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("subtest", SUBTESTS)
def test_cxx(subtest):
    run_subtest("cxx_ops", subtest, timeout=100)


def test_cxx_subtest_list():
    check_subtest_list("cxx_ops", SUBTESTS)
