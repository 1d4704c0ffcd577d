"""Probes and counters tell the same story: on a deterministic workload
(tests/c/ground_truth.c) the count of each probe seen by bpftrace equals
hakmem's own counter for the same event (hakmem_stats, kept by every
build), and the purged bytes derived from os_purge/os_reuse arguments
equal the purged_bytes counter. Routed with HAKMEM_TINY_PROFILE=hot so
that band C7 falls back and tiny_fallback fires."""
import re

import pytest

from conftest import bpftrace_run, build_program, check_ok, check_subtest_list, needs_root, run_subtest

PROGRAM = "ground_truth"
PROBES = ["os_map", "os_unmap", "os_purge", "tiny_refill", "tiny_fallback", "tiny_adopt", "tiny_abandon",
          "thread_exit", "large_cache_hit", "large_cache_miss"]
ENV = {"HAKMEM_TINY_PROFILE": "hot"}


def test_ground_truth_subtest_list():
    check_subtest_list(PROGRAM, ["workload"])


def test_ground_truth_runs():
    run_subtest(PROGRAM, "workload", env=ENV, timeout=60)


@needs_root
@pytest.mark.timeout(120)
def test_probe_counts_equal_counters():
    clauses = "".join(f"usdt:{{lib}}:hakmem:{p} {{{{ @n[pid, \"{p}\"] = count(); }}}}\n" for p in PROBES)
    clauses += "usdt:{lib}:hakmem:tiny_spill /arg2 == 1/ {{ @n[pid, \"tiny_spill_slabs\"] = count(); }}\n"
    clauses += "usdt:{lib}:hakmem:os_purge {{ @purged[pid] = sum((int64)arg0); }}\n"
    clauses += "usdt:{lib}:hakmem:os_reuse {{ @purged[pid] = sum((int64)0 - (int64)arg0); }}\n"
    proc, pid, trace = bpftrace_run(clauses, [build_program(PROGRAM), "workload"], env=ENV, timeout=60)
    check_ok(proc)
    m = re.search(r"^truth (.*)$", proc.stdout, re.M)
    assert m, proc.stdout
    truth = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}
    seen = {name: int(n) for p, name, n in re.findall(r'^@n\[(\d+), (\w+)\]: (\d+)$', trace, re.M)
            if int(p) == pid}
    purged = re.search(rf"^@purged\[{pid}\]: (-?\d+)$", trace, re.M)
    for name in PROBES + ["tiny_spill_slabs"]:
        assert seen.get(name, 0) == truth[name], f"{name}: {seen.get(name, 0)} probe hits, counter {truth[name]}"
    # the workload exercises every one of them
    for name in ["os_map", "tiny_refill", "tiny_fallback", "tiny_adopt", "tiny_abandon", "thread_exit",
                 "large_cache_hit", "large_cache_miss"]:
        assert truth[name] > 0, f"the workload never produced {name}: {truth}"
    assert purged and int(purged.group(1)) == truth["purged_bytes"], (purged and purged.group(1), truth)
