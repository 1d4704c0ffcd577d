"""Every probe of the catalogue fires (tests/c/probe_driver.c provokes the
rare ones too: the Tiny cap, a failed mmap, an out-of-memory NULL), seen by
bpftrace with plausible arguments."""
import re

import pytest

from conftest import bpftrace_run, build_program, check_ok, check_subtest_list, needs_root, run_subtest, ROOT

ENV = {"HAKMEM_TINY_SS_MAX_MB": "2", "HAKMEM_TINY_DECAY_MS": "0", "HAKMEM_BIGCACHE_MAX_MB": "16",
       "HAKMEM_CAP_LARGE": "40", "HAKMEM_WMAX_LARGE": "256K", "HAKMEM_TINY_RSS_BUDGET_KB": "2048",
       "HAKMEM_TINY_DIET_STEP": "64",
       "HAKMEM_BIGCACHE_DECAY_MS": "100", "HAKMEM_THP": "sideways", "HAKMEM_TINY_MAGCAP": "1",
       "HAKMEM_QUIET": "1"}


def catalogue():
    text = (ROOT / "src" / "probes.h").read_text()
    return [n for n, _ in re.findall(r"X\(([a-z0-9_]+), (\d)\)", text)]


def test_probe_driver_subtest_list():
    check_subtest_list("probe_driver", ["all"])


def test_probe_driver_runs():
    run_subtest("probe_driver", "all", env=ENV, timeout=60)


SAMPLE_PROBES = ("sample_alloc", "sample_free")


@needs_root
@pytest.mark.timeout(120)
def test_sample_probes_fire():
    """With a tracer on sample_alloc/sample_free, about one allocation per
    HAKMEM_SAMPLE_BYTES (512 KiB) is reported with its size, weight (the
    bytes it stands for) and tier, and its free is reported too."""
    program = ("usdt:{lib}:hakmem:sample_alloc {{ @alloc[pid, arg3] = count(); @weight[pid] = min(arg2);"
               " if (arg1 == 0) {{ @bad[pid] = count(); }} }}\n"
               "usdt:{lib}:hakmem:sample_free {{ @free[pid, arg2] = count(); }}\n")
    proc, pid, trace = bpftrace_run(program, [build_program("probe_driver"), "all"], env=ENV, timeout=60)
    check_ok(proc)
    allocs = {int(t): int(c) for p, t, c in re.findall(r"^@alloc\[(\d+), (\d+)\]: (\d+)$", trace, re.M)
              if int(p) == pid}
    frees = {int(t): int(c) for p, t, c in re.findall(r"^@free\[(\d+), (\d+)\]: (\d+)$", trace, re.M)
             if int(p) == pid}
    assert sum(allocs.values()) >= 10 and set(allocs) <= {1, 2, 3, 4}, trace[-3000:]
    assert sum(frees.values()) >= 1 and set(frees) <= set(allocs), trace[-3000:]
    # Weights: the bytes since the previous sample, intervals drawn from
    # [256 KiB, 768 KiB) of HAKMEM_SAMPLE_BYTES=512 KiB.
    weight = re.search(rf"^@weight\[{pid}\]: (\d+)$", trace, re.M)
    assert weight and int(weight.group(1)) >= 262144, trace[-3000:]
    assert f"@bad[{pid}]" not in trace, trace[-3000:]


@needs_root
@pytest.mark.timeout(120)
def test_every_probe_fires():
    # Attaching sample_alloc/sample_free switches the threads to sampling
    # mode (every allocation through the slow path, no SLL misses): those
    # two get a run of their own below.
    names = [n for n in catalogue() if n not in SAMPLE_PROBES]
    program = "".join(f'usdt:{{lib}}:hakmem:{n} {{{{ @n[pid, "{n}"] = count(); }}}}\n' for n in names)
    program += ("usdt:{lib}:hakmem:tiny_fallback {{ @fallback[pid, arg0, arg1] = count(); }}\n"
                "usdt:{lib}:hakmem:ss_tier {{ if (arg3 > 1000 || arg1 > 1 || arg2 > 1) {{ @tier_bad[pid] = count(); }} }}\n"
                "usdt:{lib}:hakmem:tiny_refill {{ if (arg0 > 40 || arg1 == 0 || arg2 > 4) {{ @refill_bad[pid] = count(); }} }}\n"
                "usdt:{lib}:hakmem:pool_refill {{ if (arg0 < 2 || arg0 > 3 || arg1 > 19 || arg2 == 0) {{ @pool_bad[pid] = count(); }} }}\n"
                "usdt:{lib}:hakmem:pool_fallback {{ @pool_fallback[pid, arg0, arg1] = count(); }}\n"
                "usdt:{lib}:hakmem:decay_tick {{ if (arg0 > 4 || arg1 == 0) {{ @decay_bad[pid] = count(); }} }}\n")
    proc, pid, trace = bpftrace_run(program, [build_program("probe_driver"), "all"], env=ENV, timeout=60)
    check_ok(proc)
    seen = {n: int(c) for p, n, c in re.findall(r'^@n\[(\d+), (\w+)\]: (\d+)$', trace, re.M) if int(p) == pid}
    missing = [n for n in names if seen.get(n, 0) == 0]
    assert not missing, f"probes that never fired: {missing}\n{trace[-3000:]}"
    reasons = {(int(r), int(b)) for p, r, b in re.findall(r"^@fallback\[(\d+), (\d+), (\d+)\]: \d+$", trace, re.M)
               if int(p) == pid}
    assert any(r == 0 and b <= 7 for r, b in reasons), f"no cap fallback of a Tiny band: {reasons}"
    for bad in ("tier_bad", "refill_bad", "pool_bad", "decay_bad"):
        assert f"@{bad}[{pid}]" not in trace, trace[-3000:]
    pool = {(int(t), int(r)) for p, t, r in re.findall(r"^@pool_fallback\[(\d+), (\d+), (\d+)\]: \d+$", trace, re.M)
            if int(p) == pid}
    assert (3, 0) in pool, f"no HAKMEM_CAP_LARGE fallback of the L25 pool: {pool}"
    assert (2, 1) in pool, f"no mmap-failure fallback of a Mid class: {pool}"
