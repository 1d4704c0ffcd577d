"""The Mid and L25 pools, memory return and the RSS budget
(tests/c/pools.c): class boundaries, L25 chunk reuse, L25 blocks in
whole pages and realloc growing them in place, the TLS ring of
cross-thread Mid frees, the capacity caps, a budget under the live data
(reported, not fatal) and one over it (kept), purge after the decay time,
malloc_trim, the scavenging of free pages inside slabs in use (the
survivors intact, the purged blocks handed out again once each), the
per-tier resident estimate against the measured RSS, and a slab carved
again for a class that reaches less of it purged whole.
With root, bpftrace checks that the os_* probes add up, tier by tier, to
the same resident estimate as hakmem's counters, and sees the ring flush."""
import re

import pytest

from conftest import (GLIBC_MODE, bpftrace_run, build_program, check_ok, check_subtest_list, hakmem_only, needs_root,
                      run_subtest)

PROGRAM = "pools"
SUBTESTS = {
    "boundaries": {},
    "l25_reuse": {},
    "l25_pages": {},
    # A minute's decay: no time-based purge between a free and the grow
    # whose free-resident count the subtest checks to the page.
    "l25_grow": {"HAKMEM_WMAX_LARGE": "4096", "HAKMEM_TINY_DECAY_MS": "60000"},
    "ring": {},
    "ring_off": {"HAKMEM_POOL_TLS_RING": "0"},
    "cap_large": {"HAKMEM_CAP_LARGE": "8", "HAKMEM_WMAX_LARGE": "4096"},
    "cap_mid_off": {"HAKMEM_CAP_MID": "0"},
    "budget_low": {"HAKMEM_TINY_RSS_BUDGET_KB": "4096"},
    "budget_trims": {"HAKMEM_TINY_RSS_BUDGET_KB": "28672"},
    "idle_purge": {"HAKMEM_TINY_DECAY_MS": "200", "HAKMEM_BIGCACHE_DECAY_MS": "200"},
    "idle_quiet": {"HAKMEM_TINY_DECAY_MS": "200", "HAKMEM_BIGCACHE_DECAY_MS": "200"},
    "idle_quiet_nothread": {"HAKMEM_TINY_DECAY_MS": "200", "HAKMEM_BIGCACHE_DECAY_MS": "200",
                            "HAKMEM_DECAY_THREAD": "0"},
    "trim": {},
    "scavenge": {},
    "idle_thread": {"HAKMEM_TINY_DECAY_MS": "200", "HAKMEM_BIGCACHE_DECAY_MS": "200"},
    "idle_thread_nothread": {"HAKMEM_TINY_DECAY_MS": "200", "HAKMEM_BIGCACHE_DECAY_MS": "200",
                             "HAKMEM_DECAY_THREAD": "0"},
    "idle_mid": {"HAKMEM_TINY_DECAY_MS": "200"},
    "idle_mid_nothread": {"HAKMEM_TINY_DECAY_MS": "200", "HAKMEM_DECAY_THREAD": "0"},
    "idle_packed": {"HAKMEM_TINY_DECAY_MS": "200"},
    "idle_packed_nothread": {"HAKMEM_TINY_DECAY_MS": "200", "HAKMEM_DECAY_THREAD": "0"},
    "tier_rss": {},
    "slab_reuse": {},
}


def subtest_of(name):
    return {"ring_off": "ring", "idle_quiet_nothread": "idle_quiet",
            "idle_thread_nothread": "idle_thread", "idle_mid_nothread": "idle_mid",
            "idle_packed_nothread": "idle_packed"}.get(name, name)


def test_pools_subtest_list():
    check_subtest_list(PROGRAM, sorted({subtest_of(n) for n in SUBTESTS}, key=list(SUBTESTS).index) + ["knobs", "leak"])


def knobs(env):
    hakmem_only()  # glibc has none of these counters
    proc = run_subtest(PROGRAM, "knobs", env=env, timeout=60)
    m = re.search(r"^knobs (.*)$", proc.stdout, re.M)
    assert m, proc.stdout
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


@pytest.mark.timeout(120)
def test_pool_knobs_act():
    """Each pool setting changes what the same workload does (4 rounds of
    2000 x 16 KiB, then 64 x 40 KiB): bigger Mid bundles mean fewer
    refills; a smaller Mid working set more; no Mid thread cache
    (POOL_TLS_FREE=0) no refills at all; bigger L25 bundles fewer trips to
    the pool; a bigger L25 growth step fewer, larger mappings."""
    base = knobs({})
    assert base["mid_refills"] > 0 and base["l25_refills"] > 0, base
    bundle = knobs({"HAKMEM_POOL_MIN_BUNDLE": "64"})
    assert bundle["mid_refills"] < base["mid_refills"], (base, bundle)
    small = knobs({"HAKMEM_WMAX_MID": "32K"})
    assert small["mid_refills"] > base["mid_refills"], (base, small)
    direct = knobs({"HAKMEM_POOL_TLS_FREE": "0"})
    assert direct["mid_refills"] == 0, direct
    l25_bundle = knobs({"HAKMEM_L25_MIN_BUNDLE": "8"})
    assert l25_bundle["l25_refills"] < base["l25_refills"], (base, l25_bundle)
    l25_one = knobs({"HAKMEM_L25_MIN_BUNDLE": "1"})
    assert l25_one["l25_refills"] == 64, l25_one
    grow = knobs({"HAKMEM_L25_RUN_BLOCKS": "200"})
    assert grow["l25_chunks"] > base["l25_chunks"], (base, grow)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(SUBTESTS))
def test_pools(name):
    proc = run_subtest(PROGRAM, subtest_of(name), env=SUBTESTS[name], timeout=100)
    if name.startswith("ring") and not GLIBC_MODE:
        flushes = int(re.search(r"flushes=(\d+)", proc.stdout).group(1))
        if name == "ring":
            assert flushes >= 4096 // 32, proc.stdout  # one per 32 blocks at most
        else:
            assert flushes == 0, proc.stdout


@needs_root
@pytest.mark.timeout(120)
def test_probes_add_up_to_the_resident_estimate():
    """os_map - os_unmap - os_purge + os_reuse per tier, from bpftrace, equals
    hakmem's own tier_mapped - tier_purged at the end of tier_rss."""
    program = ("usdt:{lib}:hakmem:os_map {{ @res[pid, arg1] = sum((int64)arg0); }}\n"
               "usdt:{lib}:hakmem:os_unmap {{ @res[pid, arg1] = sum((int64)0 - (int64)arg0); }}\n"
               "usdt:{lib}:hakmem:os_purge {{ @res[pid, arg1] = sum((int64)0 - (int64)arg0); }}\n"
               "usdt:{lib}:hakmem:os_reuse {{ @res[pid, arg1] = sum((int64)arg0); }}\n"
               "usdt:{lib}:hakmem:large_remap {{ @res[pid, 4] = sum((int64)arg1 - (int64)arg0); }}\n")
    proc, pid, trace = bpftrace_run(program, [build_program(PROGRAM), "tier_rss"], timeout=60)
    check_ok(proc)
    final = re.search(r"^tier_rss final (.*)$", proc.stdout, re.M)
    assert final, proc.stdout
    counters = {int(t): int(v) for t, v in re.findall(r"tier(\d)=(\d+)", final.group(1))}
    assert len(counters) == 5, proc.stdout
    probes = {int(t): int(v) for p, t, v in re.findall(r"^@res\[(\d+), (\d+)\]: (-?\d+)$", trace, re.M)
              if int(p) == pid}
    for tier, value in counters.items():
        assert probes.get(tier, 0) == value, f"tier {tier}: probes {probes.get(tier, 0)}, counters {value}\n{trace}"
    assert counters[1] > 0 and counters[4] > 0, proc.stdout


@needs_root
@pytest.mark.timeout(120)
def test_ring_flush_probe():
    program = "usdt:{lib}:hakmem:pool_ring_flush {{ @blocks[pid] = sum(arg0); @flushes[pid] = count(); }}\n"
    proc, pid, trace = bpftrace_run(program, [build_program(PROGRAM), "ring"], timeout=60)
    check_ok(proc)
    blocks = re.search(rf"^@blocks\[{pid}\]: (\d+)$", trace, re.M)
    assert blocks and int(blocks.group(1)) == 4096, trace
