"""Linking with hakmem instead of preloading it (tests/link/link_prog.c):
(a) against the shared library with -lhakmem and an rpath, (b) against the
static archive. Run without LD_PRELOAD, the program's own allocations and
those glibc makes for it (strdup, stdio) must be hakmem's."""

import subprocess

import pytest

from conftest import ARCHIVE, BUILD, CFLAGS, LIB, ROOT, check_ok, hakmem_only, run_prog

SRC = ROOT / "tests" / "link" / "link_prog.c"
INCLUDES = [f"-I{ROOT / 'tests' / 'c'}"]


def compile_prog(tmp_path, name, link_args):
    out = tmp_path / name
    cmd = ["gcc", *CFLAGS, *INCLUDES, str(SRC), *link_args, "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"linking failed:\n$ {' '.join(cmd)}\n{proc.stderr}"
    return out


@pytest.mark.timeout(120)
def test_link_shared(tmp_path):
    hakmem_only()
    assert LIB.exists(), f"{LIB} is not built"
    prog = compile_prog(tmp_path, "link_shared",
                        [f"-L{BUILD}", "-lhakmem", f"-Wl,-rpath,{BUILD}", "-pthread", "-ldl"])
    proc = check_ok(run_prog([prog], preload=False, timeout=60))
    lines = proc.stdout.splitlines()
    assert "ok link" in lines, proc.stdout
    assert "maps: libhakmem.so present" in lines, proc.stdout


@pytest.mark.timeout(120)
def test_link_static_archive(tmp_path):
    hakmem_only()
    assert ARCHIVE.exists(), f"{ARCHIVE} is not built"
    # As a user would: gcc prog.c libhakmem.a -pthread
    prog = compile_prog(tmp_path, "link_static", [str(ARCHIVE), "-pthread"])
    proc = check_ok(run_prog([prog], preload=False, timeout=60))
    lines = proc.stdout.splitlines()
    assert "ok link" in lines, proc.stdout
    # hakmem is inside the executable: no libhakmem.so is loaded.
    assert "maps: libhakmem.so absent" in lines, proc.stdout
