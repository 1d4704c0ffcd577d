"""Real programs under LD_PRELOAD=libhakmem.so: python3.11, sqlite3, git and
g++ do real work whose result is compared with the same run on glibc.

That hakmem was really in use is checked, not assumed:
  - python: /proc/PID/maps of the running interpreter maps libhakmem.so, and
    a bytes object's address (PYTHONMALLOC=malloc) is a live hakmem block;
  - the others: ld.so's own record (LD_DEBUG=bindings, one file per process
    with LD_DEBUG_OUTPUT) shows malloc/free bound to libhakmem.so in every
    process that binds them, and never to libc.so.6 (the HAKMEM_VERBOSE
    summary would show it too, but its format is not fixed).
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import LIB, check_ok, child_env, describe, hakmem_only, have, run_prog

ALLOC_SYMBOLS = ("malloc", "free", "calloc", "realloc")
BINDING = re.compile(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `([^']+)'")


def debug_env(tmp_path):
    """Environment that makes ld.so log symbol bindings, one file per pid."""
    log_dir = tmp_path / "ld-debug"
    log_dir.mkdir(exist_ok=True)
    return {"LD_DEBUG": "bindings", "LD_DEBUG_OUTPUT": str(log_dir / "log")}, log_dir


def check_bindings(log_dir, must_include=()):
    """Every process that bound an allocation symbol bound it to libhakmem;
    `must_include` names programs (basename patterns) that must be among
    them, so that the proof covers the process doing the real work."""
    bound_by = set()
    wrong = []
    files = sorted(Path(log_dir).glob("log.*"))
    assert files, f"ld.so wrote no LD_DEBUG logs in {log_dir}"
    for f in files:
        for m in BINDING.finditer(f.read_text(errors="replace")):
            user, provider, sym = m.groups()
            if sym not in ALLOC_SYMBOLS:
                continue
            if "libhakmem" in provider:
                bound_by.add(os.path.basename(user))
            elif os.path.basename(provider).startswith(("libc.so", "ld-linux")):
                wrong.append(f"{user} bound {sym} to {provider}")
            # Anything else is a non-PIE executable's PLT slot that stands for
            # the function's address (cc1plus takes &free): that slot jumps
            # through the executable's own binding, which is checked too.
    assert not wrong, "allocation symbols bound outside hakmem:\n" + "\n".join(sorted(set(wrong))[:20])
    assert bound_by, "no process bound malloc/free to libhakmem.so"
    for pattern in must_include:
        assert any(re.search(pattern, name) for name in bound_by), (
            f"no {pattern} process bound malloc/free to libhakmem.so (bound by: {sorted(bound_by)})")


# ---- python3.11 -----------------------------------------------------------------

PY_SCRIPT = r"""
import hashlib, json, os, sys

def work():
    d = {}
    for i in range(150000):
        d["k%d" % i] = [i, str(i) * (i % 7 + 1), {"x": i * 1.5, "t": (i, -i)}]
    words = [("w%d" % i) * (i % 40 + 1) for i in range(60000)]
    text = "|".join(words)
    pieces = text.split("|")
    assert pieces == words
    s = json.dumps(d, sort_keys=True)
    back = json.loads(s)
    assert back == json.loads(json.dumps(back, sort_keys=True))
    h = hashlib.sha256(s.encode())
    h.update(text.encode())
    for i in range(0, 150000, 3):
        del d["k%d" % i]
    h.update(json.dumps(d, sort_keys=True).encode())
    return h.hexdigest()

print("checksum", work(), flush=True)
if os.environ.get("HKTEST_OWNS_CHECK"):
    import ctypes
    owns = ctypes.CDLL(None).hakmem_owns
    owns.argtypes = [ctypes.c_void_p]
    owns.restype = ctypes.c_int
    # A bytes object starts at its block (id() is the block's address): a
    # large one comes from calloc, a small one from malloc only because of
    # PYTHONMALLOC=malloc (pymalloc would carve it out of its own arenas).
    big, small = bytes(100000), b"s" * 20 + bytes([7])
    print("owns", owns(id(big)), owns(id(small)), flush=True)
if os.environ.get("HKTEST_WAIT"):
    print("ready", flush=True)
    sys.stdin.read()  # the test reads /proc/PID/maps, then closes stdin
"""

PY_ENV = {"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.mark.timeout(180)
def test_python(tmp_path):
    hakmem_only()
    python = have("/usr/bin/python3.11")
    script = tmp_path / "work.py"
    script.write_text(PY_SCRIPT)

    expected = check_ok(run_prog([python, "-s", script], preload=False, env=PY_ENV, timeout=120))
    want = [l for l in expected.stdout.splitlines() if l.startswith("checksum")]
    assert want, describe(expected)

    env = child_env({**PY_ENV, "HKTEST_OWNS_CHECK": "1", "HKTEST_WAIT": "1"})
    proc = subprocess.Popen([python, "-s", str(script)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                break
        maps = Path(f"/proc/{proc.pid}/maps").read_text() if proc.poll() is None else ""
        out, err = proc.communicate(input="", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines += out.splitlines()
    assert proc.returncode == 0, f"python under hakmem failed ({proc.returncode}):\n{err[-3000:]}"
    assert "ready" in lines, f"the script never got ready:\n{lines}\n{err[-3000:]}"
    assert str(LIB) in maps or "libhakmem.so" in maps, "libhakmem.so is not mapped in the python process"
    assert "owns 1 1" in lines, f"python's bytes objects are not hakmem blocks: {lines}"
    got = [l for l in lines if l.startswith("checksum")]
    assert got == want, f"python's result differs under hakmem: {got} != {want}"


# ---- sqlite3 --------------------------------------------------------------------

SQL = """
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, grp INTEGER, val REAL);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
INSERT INTO t(id, name, grp, val)
  SELECT x, printf('name-%06d-%s', x, hex(x * x)), x % 97, x * 0.5 FROM c;
COMMIT;
CREATE INDEX t_grp_name ON t(grp, name);
SELECT count(*), sum(val), min(name), max(name) FROM t;
SELECT grp, count(*), sum(id) FROM t WHERE grp IN (3, 50, 96) GROUP BY grp ORDER BY grp;
SELECT name FROM t WHERE grp = 42 ORDER BY name DESC LIMIT 5;
SELECT length(group_concat(name, ',')) FROM (SELECT name FROM t ORDER BY val DESC);
UPDATE t SET name = upper(name) WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
SELECT count(*), count(DISTINCT grp), max(name) FROM t;
PRAGMA integrity_check;
"""


@pytest.mark.timeout(180)
def test_sqlite3(tmp_path):
    hakmem_only()
    sqlite3 = have("sqlite3")
    expected = check_ok(run_prog([sqlite3, tmp_path / "glibc.db"], preload=False, input=SQL,
                                 timeout=120))
    dbg, log_dir = debug_env(tmp_path)
    got = check_ok(run_prog([sqlite3, tmp_path / "hakmem.db"], env=dbg, input=SQL, timeout=120))
    assert got.stdout == expected.stdout, (
        f"sqlite3 output differs under hakmem:\n--- glibc\n{expected.stdout}\n--- hakmem\n{got.stdout}")
    assert "ok" in got.stdout.splitlines(), "integrity_check did not say ok"
    check_bindings(log_dir, must_include=[r"sqlite"])


# ---- git ------------------------------------------------------------------------

def git_env(home):
    stamp = "1700000000 +0000"
    return {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
            "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp, "LC_ALL": "C"}


def make_tree(root):
    """A few hundred files of varied sizes in nested folders, deterministic."""
    for i in range(300):
        d = root / f"dir{i % 7}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        body = "".join(f"line {k} of file {i}: {'x' * ((i * k) % 90)}\n"
                       for k in range((i * 37) % 400 + 1))
        (d / f"file{i}.txt").write_text(body)


def git_session(git, repo, env, preload, extra_env=None):
    """init, add, commit, gc, fsck; returns HEAD and the log with stats."""
    repo.mkdir()
    make_tree(repo)
    e = {**env, **(extra_env or {})}

    def git_run(*args):
        return check_ok(run_prog([git, *args], preload=preload, env=e, cwd=repo, timeout=120))

    git_run("init", "-q", "-b", "main")
    git_run("add", ".")
    git_run("commit", "-q", "-m", "a few hundred files")
    (repo / "dir1" / "sub1" / "file1.txt").write_text("changed\n")
    git_run("commit", "-q", "-a", "-m", "change one file")
    git_run("gc", "--quiet")
    git_run("fsck", "--strict", "--no-progress")
    head = git_run("rev-parse", "HEAD").stdout.strip()
    log = git_run("log", "--stat", "--format=%H %s").stdout
    status = git_run("status", "--porcelain").stdout
    return head, log, status


@pytest.mark.timeout(300)
def test_git(tmp_path):
    hakmem_only()
    git = have("git")
    env = git_env(tmp_path)
    want = git_session(git, tmp_path / "glibc", env, preload=False)
    dbg, log_dir = debug_env(tmp_path)
    got = git_session(git, tmp_path / "hakmem", env, preload=True, extra_env=dbg)
    assert got[0] == want[0], f"commit hash differs under hakmem: {got[0]} != {want[0]}"
    assert got[1] == want[1], "git log --stat differs under hakmem"
    assert got[2] == "", f"git status not clean under hakmem:\n{got[2]}"
    check_bindings(log_dir, must_include=[r"^git"])


# ---- g++ ------------------------------------------------------------------------

CXX_PROGRAM = r"""
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

template <typename T> struct Tree {
    std::map<std::string, std::vector<T>> branches;
    void add(const std::string &k, T v) { branches[k].push_back(v); }
};

int main() {
    Tree<long> t;
    for (long i = 0; i < 100000; i++)
        t.add("k" + std::to_string(i % 1000), i * i % 7919);
    long total = 0;
    for (auto &kv : t.branches) {
        std::sort(kv.second.begin(), kv.second.end());
        total += kv.second.front() + kv.second.back();
    }
    std::ostringstream os;
    auto p = std::make_shared<std::vector<std::string>>();
    for (int i = 0; i < 1000; i++) p->push_back(std::string(i % 50, 'a' + i % 26));
    os << "branches=" << t.branches.size() << " total=" << total << " strings=" << p->size();
    std::cout << os.str() << std::endl;
}
"""


@pytest.mark.timeout(300)
def test_gxx(tmp_path):
    hakmem_only()
    gxx = have("g++")
    src = tmp_path / "prog.cc"
    src.write_text(CXX_PROGRAM)
    ref = tmp_path / "prog_glibc"
    check_ok(run_prog([gxx, "-std=c++17", "-O2", src, "-o", ref], preload=False, timeout=240))
    want = check_ok(run_prog([ref], preload=False)).stdout

    dbg, log_dir = debug_env(tmp_path)
    out = tmp_path / "prog_hakmem"
    check_ok(run_prog([gxx, "-std=c++17", "-O2", src, "-o", out], env=dbg, timeout=240))
    check_bindings(log_dir, must_include=[r"^cc1plus$", r"^g\+\+"])
    # The program the compiler under hakmem built, run under hakmem too.
    got = check_ok(run_prog([out])).stdout
    assert got == want and want.startswith("branches=1000"), f"{got!r} != {want!r}"
