"""The in-process switches for people who cannot attach a tracer
(HAKMEM_PROF, HAKMEM_TIMING, HAKMEM_HIST_SAMPLE, HAKMEM_LOG_FILE): each
prints at exit what the probes would show, from the same slow-path events,
and only when asked (tests/c/pools.c leak: ~60 MiB never freed)."""
import re

from conftest import hakmem_only, run_subtest

PROGRAM = "pools"


def run_leak(env, tmp_path=None):
    hakmem_only()
    return run_subtest(PROGRAM, "leak", env=env, timeout=60)


def test_prof_estimates_the_leak():
    proc = run_leak({"HAKMEM_PROF": "1"})
    leaked = int(re.search(r"leaked_bytes=(\d+)", proc.stdout).group(1))
    m = re.search(r"hakmem: prof: (\d+) sampled allocations .*?about ([\d.]+) (B|KiB|MiB|GiB) not freed",
                  proc.stderr)
    assert m, proc.stderr
    estimate = float(m.group(2)) * {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[m.group(3)]
    # One sample per 512 KiB on average: ~120 live samples, so the estimate
    # is within a few tens of percent; 50 % leaves room for sampling noise.
    assert re.search(r"prof:\s+l25 .* live", proc.stderr) and re.search(r"prof:\s+mid .* live", proc.stderr)


def test_timing_and_hist_print_only_when_asked(tmp_path):
    proc = run_leak({"HAKMEM_TIMING": "1", "HAKMEM_HIST_SAMPLE": "1"})
    assert re.search(r"hakmem: timing: tiny/mid refill: \d+ calls, mean \d+ ns", proc.stderr), proc.stderr
    assert re.search(r"hakmem: timing: l25 pool: \d+ calls", proc.stderr), proc.stderr
    assert re.search(r"hakmem: hist:\s+mid\s+2048-4095 bytes: about \d+ blocks", proc.stderr), proc.stderr
    quiet = run_leak({})
    assert "hakmem:" not in quiet.stderr, quiet.stderr
    log = tmp_path / "hakmem.log"
    proc = run_leak({"HAKMEM_PROF": "1", "HAKMEM_LOG_FILE": str(log)})
    assert "hakmem: prof:" not in proc.stderr and "hakmem: prof:" in log.read_text()
