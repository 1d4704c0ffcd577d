"""Early initialisation and reentrancy (tests/c/early_init.c): allocation
in .preinit_array (before libhakmem's own constructor), in a
constructor(101), through dlsym(RTLD_NEXT), with HAKMEM_* variables read
during the first malloc, from pthread_once, exit handlers, pthread key
destructors and dlopen'd libraries. A deadlock fails by timeout."""

import pytest

from conftest import (GLIBC_MODE, LIB, check_ok, check_subtest_list, hakmem_only, helper_lib,
                      build_program, run_prog, run_subtest)

SUBTESTS = ["before_main", "rtld_next", "environment", "pthread_once", "exit_handlers",
            "key_destructor", "dlopen"]


def subtest_env(subtest):
    if subtest == "dlopen":
        return {"HKTEST_DLOPEN_LIB": str(helper_lib("dlopen_lib"))}
    return {}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("subtest", SUBTESTS)
def test_early_init(subtest):
    proc = run_subtest("early_init", subtest, env=subtest_env(subtest), timeout=60)
    if subtest == "exit_handlers":
        # The handlers run after main returns and report on stdout.
        lines = proc.stdout.splitlines()
        for want in ("atexit handler: block from main ok",
                     "on_exit handler: status 0, on_exit argument ok",
                     "destructor: ok"):
            assert want in lines, f"missing exit-time line {want!r} in stdout:\n{proc.stdout}"


def test_early_init_subtest_list():
    check_subtest_list("early_init", SUBTESTS)


# HAKMEM_* settings are read while the first malloc initialises hakmem,
# which here happens in .preinit_array. Bad values must be rejected, not
# crash; verbose output must not recurse into malloc or deadlock.
ENVIRONMENTS = {
    "verbose1": {"HAKMEM_VERBOSE": "1"},
    "verbose2": {"HAKMEM_VERBOSE": "2"},
    "bad_values": {"HAKMEM_VERBOSE": "banana", "HAKMEM_NO_SUCH_SETTING": "1",
                   "HAKMEM_": "x", "HAKMEM_QUIET": "maybe"},
    "quiet": {"HAKMEM_QUIET": "1", "HAKMEM_VERBOSE": "3"},
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
@pytest.mark.parametrize("subtest", ["before_main", "environment"])
def test_hakmem_environment(name, subtest):
    run_subtest("early_init", subtest, env=ENVIRONMENTS[name], timeout=60)


@pytest.mark.timeout(60)
def test_verbose_summary_at_exit():
    """HAKMEM_VERBOSE=1 makes hakmem print a summary starting with
    "hakmem:" to stderr at exit (the rest of the format is not fixed)."""
    hakmem_only()
    proc = run_subtest("api_basic", "malloc_free", env={"HAKMEM_VERBOSE": "1"})
    assert any(line.startswith("hakmem:") for line in proc.stderr.splitlines()), (
        f"no 'hakmem:' line on stderr with HAKMEM_VERBOSE=1:\n{proc.stderr}")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("order", ["hakmem_first", "hakmem_last"])
def test_preload_neighbour_allocates_at_exit(order):
    """Another preloaded library allocates in its constructor and destructor;
    in one of the two orders its destructor runs after libhakmem's."""
    other = str(helper_lib("exit_alloc_lib"))
    if GLIBC_MODE:
        preload = other
    else:
        preload = f"{LIB} {other}" if order == "hakmem_first" else f"{other} {LIB}"
    proc = run_prog([build_program("early_init"), "pthread_once"], preload=False,
                    env={"LD_PRELOAD": preload}, timeout=60)
    check_ok(proc)
    for want in ("exit_alloc_lib: constructor ok", "exit_alloc_lib: destructor ok"):
        assert want in proc.stderr.splitlines(), f"missing {want!r}:\n{proc.stderr}"
