"""Build switches and installation: STATS=1 counts the fast path, DEBUG=1
works, `make install` ships the library, header and a working pkg-config
file."""
import os
import re
import subprocess

from conftest import ROOT

PROGRAM = r"""
#include <hakmem.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    void *blocks[1000];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 1000; i++) blocks[i] = malloc(16 + i % 200);
        for (int i = 0; i < 1000; i++) free(blocks[i]);
    }
    void *p = malloc(100);
    int owned = hakmem_owns(p);
    free(p);
    struct hakmem_stats s;
    hakmem_stats_get(&s);
    printf("owned=%d malloc_calls=%llu tiny_hits=%llu version=%s\n", owned,
           (unsigned long long)s.malloc_calls, (unsigned long long)s.tiny_hits, hakmem_version());
    return owned ? 0 : 1;
}
"""


def build(tmp_path, *switches):
    out = tmp_path / "build"
    subprocess.run(["make", "-s", "-C", str(ROOT), f"BUILD={out}", *switches, "lib"], check=True,
                   capture_output=True, timeout=300)
    return out


def compile_and_run(tmp_path, build_dir, env=None):
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "prog"
    subprocess.run(["cc", "-O1", f"-I{ROOT / 'include'}", str(src), f"-L{build_dir}", "-lhakmem",
                    f"-Wl,-rpath,{build_dir}", "-o", str(exe)], check=True, capture_output=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HAKMEM_")}
    full_env.update(env or {})
    return subprocess.run([str(exe)], capture_output=True, text=True, env=full_env, timeout=60)


def test_stats_build_counts_the_fast_path(tmp_path):
    out = compile_and_run(tmp_path, build(tmp_path, "STATS=1"), {"HAKMEM_VERBOSE": "1"})
    assert out.returncode == 0, out.stderr
    fields = dict(re.findall(r"(\w+)=(\S+)", out.stdout))
    assert "stats=1" in out.stdout
    assert int(fields["malloc_calls"]) >= 10001
    assert int(fields["tiny_hits"]) > 5000
    assert "fast path (STATS=1)" in out.stderr


def test_default_build_keeps_no_fast_path_counters(tmp_path):
    out = compile_and_run(tmp_path, ROOT / "build")
    fields = dict(re.findall(r"(\w+)=(\S+)", out.stdout))
    assert out.returncode == 0 and fields["malloc_calls"] == "0" and fields["tiny_hits"] == "0"


def test_debug_build_runs(tmp_path):
    out = compile_and_run(tmp_path, build(tmp_path, "DEBUG=1"))
    assert out.returncode == 0, out.stderr
    assert "debug=1" in out.stdout


def test_install_with_pkg_config(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["make", "-s", "-C", str(ROOT), f"PREFIX={prefix}", "install"], check=True,
                   capture_output=True, timeout=300)
    for rel in ["lib/libhakmem.so", "lib/libhakmem.a", "include/hakmem.h", "lib/pkgconfig/hakmem.pc"]:
        assert (prefix / rel).exists(), rel
    env = {**os.environ, "PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig")}
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "hakmem"], capture_output=True, text=True,
                           env=env, check=True).stdout.split()
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "prog"
    subprocess.run(["cc", str(src), *flags, f"-Wl,-rpath,{prefix / 'lib'}", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "owned=1" in out.stdout


def test_sources_follow_clang_format():
    """The tree follows .clang-format (make format fixes it)."""
    import shutil
    import pytest
    if not shutil.which("clang-format"):
        pytest.skip("clang-format is not installed")
    proc = subprocess.run(["make", "-s", "format-check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
