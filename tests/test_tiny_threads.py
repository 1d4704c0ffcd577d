"""The Tiny tier across threads and in re-entered calls.

tests/c/tiny_threads.c: producers hand blocks of 1..1024 bytes to consumers
that check and free them (remote frees), with a live-block set that catches
a block handed out twice; a thread exits leaving its blocks live, another
frees some into the abandoned slabs, a third adopts them. tests/c/tiny_reentry.c:
malloc and free from an interposed mmap() while hakmem maps SuperSlabs.

As root, bpftrace checks the probes of these paths against the program's own
counts. And the multi-threaded programs run again with ThreadSanitizer, hakmem
compiled into the program (see tsan_program)."""
import re
import subprocess

import pytest

from conftest import (BUILD, GLIBC_MODE, ROOT, TEST_SRC, _build, bpftrace_run, build_program, check_ok,
                      check_subtest_list, describe, have, hakmem_only, needs_root, run_prog, run_subtest)


def test_tiny_threads_subtest_list():
    check_subtest_list("tiny_threads", ["remote_free", "adopt"])
    check_subtest_list("tiny_reentry", ["reentry"])


def fields(text, prefix):
    """{key: int} of the line "prefix key=value ..." a program printed."""
    m = re.search(rf"^{prefix} (.*)$", text, re.M)
    assert m, f"no '{prefix}' line in\n{text}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", m.group(1))}


# ---- remote frees, thread exit and adoption ------------------------------------

@pytest.mark.timeout(60)
def test_remote_free_producers_consumers():
    proc = run_subtest("tiny_threads", "remote_free", timeout=40)
    if not GLIBC_MODE:
        f = fields(proc.stdout, "remote_free")
        assert f["remote_drained"] > 0, describe(proc)


@pytest.mark.timeout(60)
def test_exit_abandon_adopt():
    proc = run_subtest("tiny_threads", "adopt", timeout=40)
    if not GLIBC_MODE:
        f = fields(proc.stdout, "adopt")
        assert f["abandoned_total"] > 0 and f["adopted_total"] > 0, describe(proc)
        assert f["mapped_peak"] >= f["mapped_start"] + 4 * 2**20, "the test maps less than it means to"


@needs_root
@pytest.mark.timeout(60)
def test_exit_abandon_adopt_probes():
    # 112-byte class (index 7): A's blocks, 585 to a slab
    program = """
usdt:{lib}:hakmem:tiny_abandon {{ @abandon[pid] = count(); if (arg2 == 0 || arg2 > 585) {{ @abandon_bad[pid] = count(); }} }}
usdt:{lib}:hakmem:tiny_adopt {{ @adopt[pid] = count(); if (arg0 == 7 && (arg2 == 0 || arg2 >= 585)) {{ @adopt_bad[pid] = count(); }} }}
usdt:{lib}:hakmem:tiny_remote_free {{ @remote[pid, tid, arg0, arg2] = count(); }}
"""
    proc, pid, trace = bpftrace_run(program, [build_program("tiny_threads"), "adopt"], timeout=40)
    check_ok(proc)
    f = fields(proc.stdout, "adopt")

    def counter(name):
        m = re.search(rf"^@{name}\[{pid}\]: (\d+)$", trace, re.M)
        return int(m.group(1)) if m else 0

    assert counter("abandon") == f["abandoned_total"], trace[-3000:]
    assert counter("adopt") == f["adopted_total"], trace[-3000:]
    assert counter("abandon_bad") == 0 and counter("adopt_bad") == 0, (
        f"tiny_abandon / tiny_adopt with a block count out of (0, 585):\n{trace[-3000:]}")
    remote = {(int(t), int(c), int(o)): int(n) for p, t, c, o, n in
              re.findall(r"^@remote\[(\d+), (\d+), (\d+), (\d+)\]: (\d+)$", trace, re.M) if int(p) == pid}
    # Every free the heapless thread made of A's blocks landed on a slab
    # whose owner had exited: a remote free of class 7 with owner 0.
    theirs = remote.get((f["freer_tid"], 7, 0), 0)
    assert theirs == f["freer_frees"], (f"a thread without a heap freed {f['freer_frees']} blocks into abandoned "
                                        f"slabs; remote frees seen: {remote}")
    # main has a heap: a free into an abandoned slab adopts the slab, so
    # none of main's frees is a remote free.
    mine = sum(n for (t, c, o), n in remote.items() if t == f["main_tid"])
    assert mine == 0, f"main freed {f['main_frees']} blocks into abandoned slabs; its remote frees: {remote}"


# ---- re-entered calls -------------------------------------------------------------

REENTRY_CONFIGS = {
    "default": {},
    # every free takes the slow path, so the nested one meets tc_busy
    "magazine_front": {"HAKMEM_TINY_TLS_SLL": "0"},
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("config", list(REENTRY_CONFIGS))
def test_reentrant_malloc_from_mmap(config):
    proc = run_subtest("tiny_reentry", "reentry", env=REENTRY_CONFIGS[config], timeout=30)
    if not GLIBC_MODE:
        f = fields(proc.stdout, "reentry")
        # 300000 x 64 bytes: about 9 SuperSlabs mapped with the hook armed
        assert f["nested"] >= 6 and f["fallbacks"] == f["nested"], describe(proc)


def test_libhakmem_calls_mmap_through_its_got():
    """Why the interposed mmap() is reached: libhakmem's calls to mmap go
    through a GOT entry (GLOB_DAT relocation, -fno-plt) that the dynamic
    linker binds to the first definition, the program's own."""
    hakmem_only()
    relocs = subprocess.run(["readelf", "-rW", str(BUILD / "libhakmem.so")], capture_output=True, text=True,
                            check=True).stdout
    assert re.search(r"R_X86_64_(GLOB_DAT|JUMP_SLOT)\s+0+\s+mmap@", relocs), relocs
    dyn = subprocess.run(["nm", "-D", "--defined-only", str(build_program("tiny_reentry"))], capture_output=True,
                         text=True, check=True).stdout
    assert re.search(r"\bT mmap$", dyn, re.M), f"the test program does not export mmap:\n{dyn}"


@needs_root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("config", list(REENTRY_CONFIGS))
def test_reentrant_fallback_probe(config):
    program = """
usdt:{lib}:hakmem:tiny_fallback {{ @fb[pid, arg0, arg1, arg2] = count(); }}
usdt:{lib}:hakmem:tiny_remote_free {{ @remote[pid, tid, arg0, arg2] = count(); }}
"""
    proc, pid, trace = bpftrace_run(program, [build_program("tiny_reentry"), "reentry"],
                                    env=REENTRY_CONFIGS[config], timeout=30)
    check_ok(proc)
    f = fields(proc.stdout, "reentry")
    fallbacks = {(int(r), int(b), int(s)): int(n) for p, r, b, s, n in
                 re.findall(r"^@fb\[(\d+), (\d+), (\d+), (\d+)\]: (\d+)$", trace, re.M) if int(p) == pid}
    # reason 3 (reentrant), band 2 (17..32 bytes), 24 bytes asked: once per nested malloc, nothing else
    assert fallbacks == {(3, 2, 24): f["nested"]}, f"tiny_fallback events: {fallbacks}\n{trace[-3000:]}"
    if config == "magazine_front":
        remote = {(int(t), int(c), int(o)): int(n) for p, t, c, o, n in
                  re.findall(r"^@remote\[(\d+), (\d+), (\d+), (\d+)\]: (\d+)$", trace, re.M) if int(p) == pid}
        tid = f["worker_tid"]
        # the hook's frees of the worker's own 48-byte blocks (class 3): onto
        # the remote list of the worker's own slab
        assert remote.get((tid, 3, tid), 0) == f["hook_frees"] > 0, f"remote frees: {remote}"


# ---- ThreadSanitizer -------------------------------------------------------------

# A preloaded libhakmem cannot be instrumented: ThreadSanitizer's runtime
# allocates (dlsym error strings) before it is initialised, and an
# instrumented malloc called then crashes. So hakmem's sources are compiled
# into the test program instead, with every allocation entry point renamed
# (objcopy --redefine-sym malloc=hkt_malloc ...) in hakmem's api.o and in
# the program's object: the program's malloc/free are hakmem's, instrumented,
# while libc, ld.so and the sanitizer keep the sanitizer's allocator.
# clang, not gcc: gcc 12 instruments the thread cache's %fs-relative
# accesses (__seg_fs) as plain addresses and faults.
TSAN_DIR = BUILD / "tsan"
TSAN_FLAGS = ["-fsanitize=thread", "-fno-omit-frame-pointer", "-O1", "-g", "-pthread"]
LIB_FLAGS = ["-std=gnu11", "-D_GNU_SOURCE", "-DHAKMEM_USDT=1", "-DHAKMEM_DEBUG_COUNTERS=0",
             "-DHAKMEM_BUILD_RELEASE=1", "-DNDEBUG", "-DSTAP_SDT_ARG_CONSTRAINT=nr", "-ftls-model=initial-exec",
             f"-I{ROOT / 'include'}", f"-I{ROOT / 'src'}", "-Wno-unknown-warning-option"]


def renamed_symbols():
    """The C allocation API libhakmem exports (src/hakmem.map), less hakmem_*
    and the C++ operators (cxx.c is left out)."""
    text = re.sub(r"/\*.*?\*/", "", (ROOT / "src" / "hakmem.map").read_text(), flags=re.S)
    names = re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*;", text.split("local:")[0])
    return [n for n in names if not n.startswith(("hakmem_", "_Z"))]


def objcopy_renamed(src, dst):
    args = []
    for name in renamed_symbols():
        args += ["--redefine-sym", f"{name}=hkt_{name}"]
    subprocess.run(["objcopy", *args, str(src), str(dst)], check=True, capture_output=True)


def tsan_program(name):
    """BUILD/tsan/NAME: tests/c/NAME.c and hakmem's sources (all but cxx.c),
    compiled with clang -fsanitize=thread and linked into one program."""
    clang = have("clang")
    have("objcopy")
    headers = sorted((ROOT / "src").glob("*.h")) + [ROOT / "include" / "hakmem.h"]
    objs = []
    for src in sorted((ROOT / "src").glob("*.c")):
        if src.name == "cxx.c":
            continue
        objs.append(_build(TSAN_DIR / "obj" / f"{src.stem}.o", [clang, *TSAN_FLAGS, *LIB_FLAGS, "-c", src],
                           [src, *headers]))
    api = TSAN_DIR / "obj" / "api.o"
    objs.remove(api)
    objcopy_renamed(api, TSAN_DIR / "api_renamed.o")
    c = TEST_SRC / f"{name}.c"
    common = [TEST_SRC / "check.h", TEST_SRC / "hk_api.h", ROOT / "include" / "hakmem.h"]
    prog_obj = _build(TSAN_DIR / f"{name}.o",
                      [clang, *TSAN_FLAGS, "-std=gnu11", "-DHKTEST_LINKED=1", f"-I{ROOT / 'include'}", "-fno-builtin",
                       "-c", c], [c, *common])
    objcopy_renamed(prog_obj, TSAN_DIR / f"{name}_renamed.o")
    target = TSAN_DIR / name
    subprocess.run([clang, *TSAN_FLAGS, "-rdynamic", TSAN_DIR / f"{name}_renamed.o", TSAN_DIR / "api_renamed.o",
                    *objs, "-o", target, "-ldl"], check=True, capture_output=True)
    # hakmem really is inside, instrumented, and serves the program's malloc
    syms = subprocess.run(["nm", str(target)], capture_output=True, text=True, check=True).stdout
    assert re.search(r" T hkt_malloc$", syms, re.M) and re.search(r" T hak_small_alloc_slow$", syms, re.M)
    assert "__tsan_func_entry" in syms
    return target


# (program, subtest, HKTEST_SCALE). threads_fork's fork_while_allocating is
# left out: ThreadSanitizer does not support threads started in the child of
# a multi-threaded fork.
TSAN_CASES = [("tiny_threads", "remote_free", 100), ("tiny_threads", "adopt", 100),
              ("threads_fork", "cross_thread_free", 100), ("threads_fork", "thread_churn", 100),
              ("pools", "idle_thread", 1), ("pools", "idle_mid", 1), ("pools", "idle_packed", 1)]
# Decay ticks every 100 ms: the cuts of idle_mid's pausing threads and
# idle_packed's walk of its slabs happen while ThreadSanitizer watches.
TSAN_ENV = {"idle_mid": {"HAKMEM_TINY_DECAY_MS": "200"}, "idle_packed": {"HAKMEM_TINY_DECAY_MS": "200"}}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("program,subtest,scale", TSAN_CASES, ids=[f"{p}-{s}" for p, s, _ in TSAN_CASES])
def test_thread_sanitizer(program, subtest, scale):
    hakmem_only()
    binary = tsan_program(program)
    proc = run_prog([binary, subtest], preload=False, timeout=90,
                    env={"HKTEST_SCALE": str(scale),
                         "TSAN_OPTIONS": "halt_on_error=0 exitcode=66 history_size=4",
                         **TSAN_ENV.get(subtest, {})})
    if "WARNING: ThreadSanitizer" in proc.stderr:
        # one line per report first (what and where), then the reports
        summary = "\n".join(sorted(set(re.findall(r"^SUMMARY: ThreadSanitizer: .*$", proc.stderr, re.M))))
        reports = re.sub(r" \(BuildId: \w+\)", "", proc.stderr)
        pytest.fail(f"ThreadSanitizer reports in {program} {subtest}:\n{summary}\n\n{reports[-15000:]}",
                    pytrace=False)
    check_ok(proc)
    assert f"ok {subtest}" in proc.stdout.splitlines(), describe(proc)
