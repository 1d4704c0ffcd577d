"""Shared helpers for the hakmem test suite.

The C/C++ test programs (tests/c/*.c, *.cc) are built by `make test-build`
into BUILD/tests/NAME; they are not linked with hakmem but run under
LD_PRELOAD=BUILD/libhakmem.so. When a program is missing or older than its
sources (e.g. pytest run by hand after editing tests/c/check.h), it is
rebuilt here with the Makefile's flags.

Environment:
  HAKMEM_BUILD   the build folder (default ROOT/build)
  HKTEST_GLIBC=1 validate the suite itself against glibc: nothing is
                 preloaded, the programs skip their hakmem-only checks, and
                 hakmem-only tests skip. (Not HAKMEM_*: those configure the
                 allocator.)
"""

import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("HAKMEM_BUILD") or ROOT / "build").resolve()
LIB = BUILD / "libhakmem.so"
ARCHIVE = BUILD / "libhakmem.a"
TEST_BIN = BUILD / "tests"
TEST_SRC = ROOT / "tests" / "c"
HELPER_SRC = ROOT / "tests" / "lib"
GLIBC_MODE = os.environ.get("HKTEST_GLIBC", "") not in ("", "0")

# The Makefile's TEST_CFLAGS / TEST_CXXFLAGS (sanitizers aside).
WARN = ["-Wall", "-Wextra", "-Werror", "-Wshadow"]
CFLAGS = ["-std=gnu11", *WARN, "-O1", "-g", "-pthread", f"-I{ROOT / 'include'}",
          "-fno-builtin", "-Wno-alloc-size-larger-than"]
CXXFLAGS = ["-std=gnu++17", *WARN, "-O1", "-g", "-pthread", f"-I{ROOT / 'include'}",
            "-fno-builtin", "-Wno-alloc-size-larger-than", "-fsized-deallocation",
            "-faligned-new"]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

DEFAULT_TIMEOUT = 300  # seconds, for tests that do not set their own


def pytest_collection_modifyitems(items):
    # Every test gets a pytest-timeout: a deadlock must fail, not hang.
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


# ---- skipping --------------------------------------------------------------

def have(cmd):
    """The path of `cmd` (a name on PATH or an absolute path); skips the
    calling test with a one-line reason when it is not installed."""
    path = cmd if os.path.isabs(cmd) else shutil.which(cmd)
    if not path or not os.access(path, os.X_OK):
        pytest.skip(f"{cmd} is not installed")
    return path


def hakmem_only():
    """Skip in glibc mode: the test checks something only hakmem does."""
    if GLIBC_MODE:
        pytest.skip("hakmem-only check (HKTEST_GLIBC=1)")


# ---- building ----------------------------------------------------------------

def _stale(target, sources):
    if not target.exists():
        return True
    t = target.stat().st_mtime
    return any(s.exists() and s.stat().st_mtime > t for s in sources)


def _build(target, cmd, sources):
    """Build `target` with the compile command `cmd` (given without -o)
    unless it is newer than all `sources`. Builds to a temporary name and
    renames, under a lock, so that parallel workers (xdist) do not collide."""
    if not _stale(target, sources):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".hktest-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _stale(target, sources):
            return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        cmd = [str(c) for c in cmd] + ["-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"compiling {target.name} failed:\n$ {' '.join(cmd)}\n{proc.stderr}",
                        pytrace=False)
        os.replace(tmp, target)
    return target


def build_program(name):
    """The path of the test program built from tests/c/NAME.c or NAME.cc."""
    common = [TEST_SRC / "check.h", TEST_SRC / "hk_api.h", ROOT / "include" / "hakmem.h"]
    c, cc = TEST_SRC / f"{name}.c", TEST_SRC / f"{name}.cc"
    target = TEST_BIN / name
    if c.exists():
        return _build(target, ["gcc", *CFLAGS, c, "-ldl"], [c, *common])
    if cc.exists():
        return _build(target, ["g++", *CXXFLAGS, cc, "-ldl"], [cc, *common])
    raise FileNotFoundError(f"no tests/c/{name}.c or .cc")


def helper_lib(name):
    """tests/lib/NAME.c built as BUILD/tests/NAME.so."""
    src = HELPER_SRC / f"{name}.c"
    return _build(TEST_BIN / f"{name}.so",
                  ["gcc", "-std=gnu11", *WARN, "-O1", "-g", "-fPIC", "-shared", src], [src])


# ---- running -----------------------------------------------------------------

def child_env(env=None, preload=True):
    """The environment for a program under test: ours, minus anything that
    would change what is loaded, plus `env`; LD_PRELOAD=LIB when preload."""
    e = dict(os.environ)
    for var in ("LD_PRELOAD", "LD_LIBRARY_PATH", "HAKMEM_BUILD"):
        e.pop(var, None)
    if GLIBC_MODE:
        e["HKTEST_GLIBC"] = "1"
    elif preload:
        if not LIB.exists():
            pytest.fail(f"{LIB} does not exist: build it first (make lib)", pytrace=False)
        e["LD_PRELOAD"] = str(LIB)
    e.update(env or {})
    return e


def run_prog(argv, preload=True, env=None, timeout=60, cwd=None, input=None):
    """Run argv and return the CompletedProcess (text output). preload adds
    LD_PRELOAD=LIB (not in glibc mode). Running past `timeout` seconds fails
    the test as a probable deadlock, with the output seen so far."""
    argv = [str(a) for a in argv]
    try:
        # No terminal to wait on: stdin is /dev/null unless input is given.
        stdin = None if input is not None else subprocess.DEVNULL
        return subprocess.run(argv, env=child_env(env, preload), cwd=cwd, input=input,
                              stdin=stdin, capture_output=True, text=True, errors="replace",
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"{' '.join(argv)} ran past {timeout} s (deadlock?)\n"
                    f"--- stdout\n{_tail(out)}\n--- stderr\n{_tail(err)}", pytrace=False)


def _tail(text, lines=60):
    text = text or ""
    parts = text.splitlines()
    if len(parts) > lines:
        parts = [f"[... {len(parts) - lines} lines cut ...]"] + parts[-lines:]
    return "\n".join(parts)


def describe(proc):
    """A failed run, for assertion messages: command, exit status or signal,
    and the tail of its output."""
    rc = proc.returncode
    if rc < 0:
        try:
            status = f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            status = f"killed by signal {-rc}"
    else:
        status = f"exit status {rc}"
    args = proc.args if isinstance(proc.args, str) else " ".join(map(str, proc.args))
    return (f"$ {args}\n{status}\n--- stdout\n{_tail(proc.stdout)}\n"
            f"--- stderr\n{_tail(proc.stderr)}")


def check_ok(proc):
    """Fail unless proc exited 0."""
    if proc.returncode != 0:
        pytest.fail(describe(proc), pytrace=False)
    return proc


def run_subtest(program, subtest, env=None, timeout=60, preload=True):
    """Run one subtest of a test program; fail with its messages unless it
    passes."""
    proc = run_prog([build_program(program), subtest], preload=preload, env=env, timeout=timeout)
    check_ok(proc)
    if f"ok {subtest}" not in proc.stdout.splitlines():
        pytest.fail(f"subtest {subtest} did not report success\n{describe(proc)}", pytrace=False)
    return proc


def check_subtest_list(program, names):
    """The names a test file parametrizes over are exactly the program's."""
    proc = check_ok(run_prog([build_program(program), "--list"], preload=False,
                             env={"HKTEST_GLIBC": "1"}))
    listed = proc.stdout.split()
    assert sorted(listed) == sorted(names), (
        f"{program} --list and the test file disagree: only in the program: "
        f"{sorted(set(listed) - set(names))}, only in the test file: "
        f"{sorted(set(names) - set(listed))}")


# ---- tracing -----------------------------------------------------------------

def _mount_tracefs():
    if not os.path.ismount("/sys/kernel/tracing"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=False,
                       capture_output=True)


def bpftrace_run(program, argv, env=None, timeout=60):
    """Run argv under LD_PRELOAD=LIB while bpftrace runs `program`, in which
    {lib} stands for the library's absolute path (probes are written
    usdt:{lib}:hakmem:NAME; literal braces doubled, as for str.format).

    bpftrace attaches with --usdt-file-activation before the program starts
    (bpftrace 0.17's -c cannot attach to a preloaded library); the BEGIN
    clause added here prints READY once every probe is attached. After the
    program exits, bpftrace gets SIGINT and prints its maps. Returns
    (proc, pid, trace): the program's CompletedProcess, its pid (to pick
    its events out of the trace: other processes may use the library too)
    and bpftrace's whole output. The caller must be marked needs_root;
    skips when bpftrace is not installed or in glibc mode."""
    hakmem_only()
    bpftrace = have("bpftrace")
    _mount_tracefs()
    lib = str(LIB.resolve())
    source = 'BEGIN { printf("READY\\n"); }\n' + program.format(lib=lib)
    tracer = subprocess.Popen([bpftrace, "-B", "line", "--usdt-file-activation", "-e", source],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace")
    head = []
    try:
        deadline = time.time() + 60
        while True:
            line = tracer.stdout.readline()
            if not line or time.time() > deadline:
                tracer.kill()
                pytest.fail("bpftrace did not attach:\n" + "".join(head) + tracer.stdout.read(),
                            pytrace=False)
            head.append(line)
            if line.startswith("READY"):
                break
        argv = [str(a) for a in argv]
        child = subprocess.Popen(argv, env=child_env(env), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 errors="replace")
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            pytest.fail(f"{' '.join(argv)} ran past {timeout} s under bpftrace (deadlock?)\n"
                        f"--- stdout\n{_tail(out)}\n--- stderr\n{_tail(err)}", pytrace=False)
        proc = subprocess.CompletedProcess(argv, child.returncode, out, err)
    finally:
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)
        try:
            rest, _ = tracer.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            tracer.kill()
            rest, _ = tracer.communicate()
    return proc, child.pid, "".join(head) + rest
