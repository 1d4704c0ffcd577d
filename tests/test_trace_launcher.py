"""`build/hakmem trace SCRIPT -- CMD`: the script sees the probes fired by
CMD's first allocation (config_loaded fires while hakmem initialises, before
the first allocation is served), the launcher prints the script's output
and exits with CMD's status; `-p PID` refuses a process without hakmem."""
import os
import subprocess

import pytest

from conftest import BUILD, ROOT, have, needs_root

HAKMEM = BUILD / "hakmem"
SCRIPT = """
usdt:*:hakmem:config_loaded { printf("first: config_loaded set=%d\\n", arg0); }
usdt:*:hakmem:ss_map { @superslabs = count(); }
"""


def build_tool():
    subprocess.run(["make", "-s", "-C", str(ROOT), str(HAKMEM)], check=True, capture_output=True)


@needs_root
@pytest.mark.timeout(120)
@pytest.mark.parametrize("status", [0, 5])
def test_trace_sees_the_first_allocation_and_passes_the_status(tmp_path, status):
    have("bpftrace")
    python = have("/usr/bin/python3.11")
    build_tool()
    script = tmp_path / "first.bt"
    script.write_text(SCRIPT)
    code = f"import sys\nx = [str(i) for i in range(50000)]\nsys.exit({status})"
    # The environment goes to the launcher, not through env(1): the probes
    # are armed in the process image the launcher starts.
    proc = subprocess.run([HAKMEM, "trace", script, "--", python, "-c", code], capture_output=True, text=True,
                          timeout=100, env=dict(os.environ, PYTHONMALLOC="malloc"))
    assert proc.returncode == status, proc.stdout + proc.stderr[-2000:]
    assert "first: config_loaded" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert "@superslabs:" in proc.stdout, "the script's maps were not printed at the end:\n" + proc.stdout


@needs_root
@pytest.mark.timeout(120)
def test_trace_runs_the_shipped_tier_flow_script():
    """probes/tier_flow.bt has a BEGIN block of its own (bpftrace 0.17 takes
    one BEGIN only): the launcher's marker goes inside it, and the totals
    show the L25 pool mapping chunks for 100 KB buffers."""
    have("bpftrace")
    python = have("/usr/bin/python3.11")
    build_tool()
    proc = subprocess.run([HAKMEM, "trace", ROOT / "probes" / "tier_flow.bt", "--", python, "-c",
                           "x = [bytearray(100000) for i in range(200)]"], capture_output=True, text=True,
                          timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "tracing hakmem tier flow" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert "@total[l25_chunk_map]:" in proc.stdout and "@resident_bytes[3]:" in proc.stdout, proc.stdout


@needs_root
@pytest.mark.timeout(60)
def test_trace_refuses_a_process_without_hakmem(tmp_path):
    build_tool()
    script = tmp_path / "any.bt"
    script.write_text(SCRIPT)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        proc = subprocess.run([HAKMEM, "trace", script, "-p", str(sleeper.pid)], capture_output=True, text=True,
                              timeout=30)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 1
    assert "does not use hakmem" in proc.stderr


def test_trace_usage_error():
    build_tool()
    proc = subprocess.run([HAKMEM, "trace"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "usage: hakmem trace" in proc.stderr
