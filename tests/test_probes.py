"""The probe catalogue: the USDT notes in build/libhakmem.so, the list in
src/probes.h and TRACING.md agree; arguments are in registers; a USDT=0
build has no probes; and, as root, bpftrace sees the probes fire with
plausible arguments."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BUILD, LIB, ROOT


def elf_probes(lib):
    """{name: {argument spec tuple per site}} of provider hakmem."""
    out = subprocess.run(["readelf", "-n", "--wide", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    probes = {}
    for provider, name, args in re.findall(
            r"Provider: (\S+)\s+Name: (\S+)\s+Location: [^\n]*\n\s+Arguments:([^\n]*)", out):
        if provider == "hakmem":
            probes.setdefault(name, set()).add(tuple(args.split()))
    return probes


def documented_probes():
    text = (ROOT / "TRACING.md").read_text()
    probes = {}
    for m in re.finditer(r"^\| `([a-z0-9_]+)` \| [^|]+ \| ([^|]+) \|", text, re.M):
        name, args = m.groups()
        probes[name] = len(set(re.findall(r"\barg(\d)\b", args)))
    return probes


def catalogue_probes():
    text = (ROOT / "src" / "probes.h").read_text()
    return {n: int(c) for n, c in re.findall(r"X\(([a-z0-9_]+), (\d)\)", text)}


def test_elf_notes_match_tracing_md():
    elf = elf_probes(LIB)
    doc = documented_probes()
    assert elf, "no hakmem probes in the library"
    assert set(elf) == set(doc), (f"in the binary only: {sorted(set(elf) - set(doc))}; "
                                  f"in TRACING.md only: {sorted(set(doc) - set(elf))}")
    for name, sites in elf.items():
        for args in sites:
            assert len(args) == doc[name], f"{name}: {len(args)} arguments in the binary, {doc[name]} documented"


def test_catalogue_header_matches_binary():
    elf = elf_probes(LIB)
    cat = catalogue_probes()
    assert set(cat) == set(elf)
    for name, count in cat.items():
        assert all(len(args) == count for args in elf[name]), name


def test_arguments_are_in_registers():
    # "-8@g(%rip)" is refused by libbpf and read as garbage by bpftrace; stack
    # slots cost a spill on every probe site.
    for name, sites in elf_probes(LIB).items():
        for args in sites:
            for arg in args:
                assert "(%rip)" not in arg and "(%rsp)" not in arg, f"{name}: {arg}"


def test_every_probe_has_a_semaphore():
    out = subprocess.run(["readelf", "-n", "--wide", str(LIB)], capture_output=True, text=True).stdout
    sems = re.findall(r"Provider: hakmem\s+Name: \S+\s+Location: \S+, Base: \S+, Semaphore: (\S+)", out)
    assert sems and all(int(s, 16) != 0 for s in sems)


def test_usdt0_build_has_no_probes(tmp_path):
    build = tmp_path / "usdt0"
    subprocess.run(["make", "-s", "-C", str(ROOT), f"BUILD={build}", "USDT=0", "lib"], check=True,
                   capture_output=True, timeout=300)
    assert elf_probes(build / "libhakmem.so") == {}
    notes = subprocess.run(["readelf", "-n", str(build / "libhakmem.so")], capture_output=True, text=True).stdout
    assert "stapsdt" not in notes
    # and it still is a working allocator
    out = subprocess.run(["sort", "-n"], input="3\n1\n2\n", capture_output=True, text=True,
                         env={**os.environ, "LD_PRELOAD": str(build / "libhakmem.so")}, timeout=30)
    assert out.stdout.split() == ["1", "2", "3"]


@pytest.mark.skipif(not shutil.which("tplist-bpfcc"), reason="tplist-bpfcc (bpfcc-tools) not installed")
def test_tplist_lists_every_probe():
    out = subprocess.run(["tplist-bpfcc", "-l", str(LIB)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0 and "root" in (out.stderr + out.stdout).lower():
        pytest.skip("tplist-bpfcc needs root here")
    listed = set(re.findall(r"hakmem:(\w+)", out.stdout))
    assert listed == set(catalogue_probes()), out.stdout + out.stderr


def bpftrace_available():
    if os.geteuid() != 0:
        return "needs root (bpftrace attaches uprobes)"
    if not shutil.which("bpftrace"):
        return "bpftrace not installed"
    return None


@pytest.mark.skipif(bpftrace_available() is not None, reason=str(bpftrace_available()))
def test_bpftrace_sees_probes_fire_with_plausible_arguments():
    if not os.path.ismount("/sys/kernel/tracing"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=False)
    lib = str(LIB.resolve())
    # BEGIN runs once every probe is attached: "Attaching N probes" comes earlier.
    program = f"""
BEGIN {{ printf("READY\\n"); }}
usdt:{lib}:hakmem:config_rejected {{ printf("REJECTED %s %s %d\\n", str(arg0), str(arg1), arg2); }}
usdt:{lib}:hakmem:config_unknown {{ printf("UNKNOWN %s\\n", str(arg0)); }}
usdt:{lib}:hakmem:large_map {{ if (arg0 >= 5000000 && arg0 < 5000100) {{ printf("LARGE_MAP %d %d\\n", arg0, arg1); }} }}
usdt:{lib}:hakmem:tiny_refill {{ @refill_bad_class = count(); if (arg0 < 41 && arg1 > 0) {{ @refill_ok = count(); }} }}
usdt:{lib}:hakmem:ss_slab_carve {{ if (arg0 < 41 && arg1 >= 8 && arg1 <= 32768) {{ @carve_ok = count(); }} }}
usdt:{lib}:hakmem:thread_exit {{ @thread_exit = count(); }}
usdt:{lib}:hakmem:os_map {{ if (arg1 <= 4 && arg0 > 0) {{ @os_map_ok = count(); }} }}
"""
    proc = subprocess.Popen(["bpftrace", "-B", "line", "--usdt-file-activation", "-e", program], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("READY"):
                break
        else:
            pytest.fail("bpftrace did not attach: " + "".join(lines))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAKMEM_")}
        env.update({"LD_PRELOAD": lib, "HAKMEM_THP": "sideways", "HAKMEM_TINY_MAGCAP": "1",
                    "HAKMEM_QUIET": "1", "PYTHONMALLOC": "malloc"})
        script = ("import threading\n"
                  "b = bytearray(5000000)\n"
                  "def work():\n    x = [str(i) * 3 for i in range(20000)]\n"
                  "ts = [threading.Thread(target=work) for _ in range(3)]\n"
                  "[t.start() for t in ts]; [t.join() for t in ts]\n")
        subprocess.run(["/usr/bin/python3.11", "-c", script], env=env, check=True, timeout=60)
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    text = "".join(lines) + out
    assert "REJECTED HAKMEM_THP sideways 2" in text, text
    assert "UNKNOWN HAKMEM_TINY_MAGCAP" in text, text
    m = re.search(r"LARGE_MAP (\d+) (\d+)", text)
    assert m, text
    size, mapped = int(m.group(1)), int(m.group(2))
    assert mapped == (size + 4095) // 4096 * 4096
    for counter in ["@refill_ok", "@carve_ok", "@thread_exit", "@os_map_ok"]:
        m = re.search(re.escape(counter) + r": (\d+)", text)
        assert m and int(m.group(1)) > 0, f"{counter} missing: {text}"
    assert re.search(r"@refill_bad_class: (\d+)", text).group(1) == re.search(r"@refill_ok: (\d+)", text).group(1)
