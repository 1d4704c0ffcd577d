"""scripts/perf-sdt.sh: perf records hakmem's USDT probes for a command
(LD_PRELOAD set by the script) and for a running process, prints a count
per probe, removes the uprobe events it defined, and refuses a process that
does not use hakmem."""
import re
import subprocess
import time

import pytest

from conftest import LIB, ROOT, have, needs_root

SCRIPT = ROOT / "scripts" / "perf-sdt.sh"
WORKLOAD = "x = [str(i) * 3 for i in range(200000)]; del x"


def sdt_events():
    out = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    return sorted(set(re.findall(r"sdt_hakmem:\w+", out)))


def counts(stdout):
    return {name: int(n) for n, name in re.findall(r"^\s*(\d+) sdt_hakmem:(\w+)$", stdout, re.M)}


@needs_root
@pytest.mark.timeout(180)
def test_perf_records_probes_of_a_command(tmp_path):
    have("perf")
    python = have("/usr/bin/python3.11")
    before = sdt_events()
    proc = subprocess.run([SCRIPT, "-e", "ss_map,tiny_refill,os_map", "-o", tmp_path / "perf.data", "--",
                           "env", "PYTHONMALLOC=malloc", python, "-c", WORKLOAD],
                          capture_output=True, text=True, timeout=150, env={"HAKMEM_LIB": str(LIB),
                                                                             "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = counts(proc.stdout)
    assert set(seen) <= {"ss_map", "tiny_refill", "os_map"}, proc.stdout
    # 200 000 strings under PYTHONMALLOC=malloc: SuperSlabs mapped, thread caches refilled
    assert seen.get("ss_map", 0) >= 1 and seen.get("tiny_refill", 0) >= 10 and seen.get("os_map", 0) >= 1, proc.stdout
    assert "sdt_hakmem:tiny_refill" in proc.stderr  # perf script's events
    assert sdt_events() == before, "perf-sdt.sh left uprobe events behind"


@needs_root
@pytest.mark.timeout(120)
def test_perf_records_a_running_process(tmp_path):
    have("perf")
    python = have("/usr/bin/python3.11")
    loop = "import time\nfor _ in range(400):\n    x = [str(i) for i in range(5000)]; del x; time.sleep(0.01)\n"
    target = subprocess.Popen([python, "-c", loop], env={"LD_PRELOAD": str(LIB), "PYTHONMALLOC": "malloc"})
    try:
        time.sleep(0.5)
        proc = subprocess.run([SCRIPT, "-e", "tiny_refill,tiny_spill", "-o", tmp_path / "perf.data",
                               "-p", str(target.pid), "-d", "2"], capture_output=True, text=True, timeout=90,
                              env={"HAKMEM_LIB": str(LIB), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    finally:
        target.kill()
        target.wait()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert counts(proc.stdout).get("tiny_refill", 0) >= 1, proc.stdout + proc.stderr[-2000:]


@needs_root
def test_perf_refuses_a_process_without_hakmem():
    have("perf")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        proc = subprocess.run([SCRIPT, "-p", str(sleeper.pid)], capture_output=True, text=True, timeout=30)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 1
    assert "does not use hakmem" in proc.stderr
