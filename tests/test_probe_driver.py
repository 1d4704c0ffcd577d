"""Every probe of the catalogue fires (tests/c/probe_driver.c provokes the
rare ones too: the Tiny cap, a failed mmap, an out-of-memory NULL), seen by
bpftrace with plausible arguments."""
import re

import pytest

from conftest import bpftrace_run, build_program, check_ok, check_subtest_list, needs_root, run_subtest, ROOT

ENV = {"HAKMEM_TINY_SS_MAX_MB": "2", "HAKMEM_TINY_DECAY_MS": "0", "HAKMEM_BIGCACHE_MAX_MB": "4",
       "HAKMEM_BIGCACHE_DECAY_MS": "100", "HAKMEM_THP": "sideways", "HAKMEM_TINY_MAGCAP": "1",
       "HAKMEM_QUIET": "1"}


def catalogue():
    text = (ROOT / "src" / "probes.h").read_text()
    return [n for n, _ in re.findall(r"X\(([a-z0-9_]+), (\d)\)", text)]


def test_probe_driver_subtest_list():
    check_subtest_list("probe_driver", ["all"])


def test_probe_driver_runs():
    run_subtest("probe_driver", "all", env=ENV, timeout=60)


@needs_root
@pytest.mark.timeout(120)
def test_every_probe_fires():
    names = catalogue()
    program = "".join(f'usdt:{{lib}}:hakmem:{n} {{{{ @n[pid, "{n}"] = count(); }}}}\n' for n in names)
    program += ("usdt:{lib}:hakmem:tiny_fallback {{ @fallback[pid, arg0, arg1] = count(); }}\n"
                "usdt:{lib}:hakmem:ss_tier {{ if (arg3 > 1000 || arg1 > 1 || arg2 > 1) {{ @tier_bad[pid] = count(); }} }}\n"
                "usdt:{lib}:hakmem:tiny_refill {{ if (arg0 > 40 || arg1 == 0 || arg2 > 4) {{ @refill_bad[pid] = count(); }} }}\n")
    proc, pid, trace = bpftrace_run(program, [build_program("probe_driver"), "all"], env=ENV, timeout=60)
    check_ok(proc)
    seen = {n: int(c) for p, n, c in re.findall(r'^@n\[(\d+), (\w+)\]: (\d+)$', trace, re.M) if int(p) == pid}
    missing = [n for n in names if seen.get(n, 0) == 0]
    assert not missing, f"probes that never fired: {missing}\n{trace[-3000:]}"
    reasons = {(int(r), int(b)) for p, r, b in re.findall(r"^@fallback\[(\d+), (\d+), (\d+)\]: \d+$", trace, re.M)
               if int(p) == pid}
    assert any(r == 0 and b <= 7 for r, b in reasons), f"no cap fallback of a Tiny band: {reasons}"
    assert any(r == 1 for r, b in reasons), f"no mmap-failure fallback: {reasons}"
    assert f"@tier_bad[{pid}]" not in trace and f"@refill_bad[{pid}]" not in trace, trace[-3000:]
