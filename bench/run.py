#!/usr/bin/python3
"""hakmem benchmark driver: runs bench/* under hakmem and its peers.

Modes (exactly one; see bench/README.md):
  --full     every workload, 5 runs each, scale 1.0
  --quick    the same table shape in under a minute (scale 0.1, 1 run)
  --instr    instructions per malloc+free under callgrind
  --probes   hakmem default build vs USDT=0 build vs bpftrace-traced

Only the Python standard library is used; plots are drawn by gnuplot.
"""

import argparse
import csv
import datetime
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN_DIR = REPO / "build" / "bench" / "bin"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")

# Reference first: every ratio is peer / reference.
ALLOCATORS = [
    ("hakmem", REPO / "build" / "libhakmem.so"),
    ("glibc", None),
    ("jemalloc", LIBDIR / "libjemalloc.so.2"),
    ("mimalloc", LIBDIR / "libmimalloc.so.2"),
    ("tcmalloc", LIBDIR / "libtcmalloc_minimal.so.4"),
]


class VariantPath(type(Path())):
    """A library path that also carries environment variables: hakmem run
    with one of its A/B switches (not in the default set; name them with
    --allocs, or use `make bench-fronts`)."""


def hakmem_variant(env):
    path = VariantPath(REPO / "build" / "libhakmem.so")
    path.variant_env = env
    return path


# The Tiny tier's alternative fronts (README, "Tiny fronts: A/B").
VARIANTS = [
    ("hakmem-mag", hakmem_variant({"HAKMEM_TINY_TLS_SLL": "0"})),
    ("hakmem-quick", hakmem_variant({"HAKMEM_TINY_QUICK": "1"})),
    ("hakmem-fastcache", hakmem_variant({"HAKMEM_TINY_FASTCACHE": "1"})),
]

PACKAGES = {"glibc": "libc6", "jemalloc": "libjemalloc2", "mimalloc": "libmimalloc2.0",
            "tcmalloc": "libtcmalloc-minimal4"}

# name, runs at several thread counts, scale used by --quick
WORKLOADS = [
    ("tiny_hot", False, 0.1),
    ("tiny_bands", False, 0.1),
    ("mixed_small", True, 0.1),
    ("mixed_mid", False, 0.1),
    ("mixed_l25", False, 0.1),
    ("mixed_large", False, 0.1),
    ("xthread_prodcons", True, 0.1),
    ("larson", True, 0.1),
    ("false_sharing", True, 0.1),
    ("realloc_growth", False, 0.1),
    ("frag_stress", False, 0.1),
    ("phases", False, 0.1),
]
WORKLOAD_NAMES = [w[0] for w in WORKLOADS]
LIVE_WORKLOADS = ("frag_stress", "phases")  # their end RSS is read against the live bytes
# rss_start: before the first allocation; live_pages: the pages the survivors
# touch, the floor for an allocator that does not move blocks.
PHASE_KEYS = ["rss_start_kb", "rss_fill_kb", "rss_freemost_kb", "rss_other_kb", "rss_keep1_kb", "rss_idle_kb",
              "live_pages_kb"]
FRAG_KEYS = ["rss_small_kb", "rss_mid_kb", "end_rss_kb", "rss_idle_kb"]

# --instr: (label, workload, extra env). Two exact op counts; the difference
# cancels start-up (loader, allocator init, first-touch of the heap).
INSTR_CASES = [
    ("tiny_hot pair (32 B)", "tiny_hot", {"BENCH_VARIANT": "pair"}),
    ("tiny_hot batch (100 x 32 B)", "tiny_hot", {"BENCH_VARIANT": "batch"}),
    ("tiny_bands (1 B - 1 KiB)", "tiny_bands", {}),
]
INSTR_N1, INSTR_N2 = 200_000, 400_000
# --probes: workloads whose steady state is reached quickly enough for the
# same two-count method (ops per workload; the rest get time only).
PROBE_INSTR_OPS = {"tiny_hot": (200_000, 400_000), "tiny_bands": (200_000, 400_000),
                   "mixed_small": (200_000, 400_000), "mixed_mid": (100_000, 200_000),
                   "realloc_growth": (100_000, 200_000)}

RESULT_FIELDS = ["workload", "threads", "allocator", "run", "status", "rc", "seconds", "ops",
                 "ops_per_s", "peak_rss_kb", "end_rss_kb", "live_bytes", "wall_s", "extra"]


def warn(msg):
    print(f"run.py: warning: {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"run.py: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# ---------------------------------------------------------------- running --

def alloc_env(preload, extra=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("BENCH_OPS", None)
    if preload:
        env["LD_PRELOAD"] = str(preload)
    env.update(getattr(preload, "variant_env", {}))
    env.update(extra or {})
    return env


def parse_result(stdout):
    """The key=value pairs of the last RESULT line, or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return dict(tok.split("=", 1) for tok in line.split()[1:] if "=" in tok)
    return None


def run_process(cmd, env, timeout):
    """Runs cmd in its own process group; returns (rc or None on timeout, out, err, wall)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
    return rc, out, err, time.monotonic() - t0


def describe_rc(rc):
    if rc is not None and rc < 0:
        try:
            return f"rc={rc} {signal.Signals(-rc).name}"
        except ValueError:
            pass
    return f"rc={rc}"


def run_workload(workload, threads, alloc, preload, scale, timeout, extra_env=None):
    """One run; returns a results.csv row (status 'ok' or why not)."""
    cmd = [str(BIN_DIR / workload), f"{scale:g}", str(threads)]
    rc, out, err, wall = run_process(cmd, alloc_env(preload, extra_env), timeout)
    res = parse_result(out)
    row = {"workload": workload, "threads": threads, "allocator": alloc, "rc": rc,
           "wall_s": f"{wall:.3f}", "stderr_tail": err.strip().splitlines()[-3:]}
    if rc is None:
        row["status"] = f"timeout (>{timeout:g}s)"
    elif "cannot be preloaded" in err:
        # ld.so only warns and goes on with glibc: that must not pass as a result.
        row["status"] = "preload failed"
    elif rc != 0:
        row["status"] = f"crashed ({describe_rc(rc)})"
    elif res is None:
        row["status"] = "no RESULT line"
    else:
        row["status"] = "ok"
    if res:
        core = {"name", "threads", "seconds", "ops", "peak_rss_kb", "end_rss_kb", "live_bytes"}
        row.update({k: res.get(k, "") for k in ("seconds", "ops", "peak_rss_kb", "end_rss_kb",
                                                "live_bytes")})
        try:
            row["ops_per_s"] = f"{float(res['ops']) / float(res['seconds']):.1f}"
        except (KeyError, ValueError, ZeroDivisionError):
            row["ops_per_s"] = ""
        row["extra"] = " ".join(f"{k}={v}" for k, v in res.items() if k not in core)
    return row


def ensure_binaries(names):
    """Builds missing or stale bench binaries through the Makefile's own rule."""
    stale = []
    for name in names:
        binary, src = BIN_DIR / name, REPO / "bench" / f"{name}.c"
        deps = [src, REPO / "bench" / "bench_common.h"]
        if not binary.exists() or any(d.stat().st_mtime > binary.stat().st_mtime for d in deps):
            stale.append(f"build/bench/bin/{name}")
    if stale:
        print(f"building {len(stale)} bench binaries", flush=True)
        r = subprocess.run(["make", "-s", "-C", str(REPO)] + stale)
        if r.returncode != 0:
            die("building the bench binaries failed")


def select_allocators(arg):
    wanted = [a.strip() for a in arg.split(",")] if arg else [a for a, _ in ALLOCATORS]
    known = dict(ALLOCATORS + VARIANTS)
    for a in wanted:
        if a not in known:
            die(f"unknown allocator {a!r} (known: {', '.join(known)})")
    chosen, missing = [], []
    for name, path in ALLOCATORS + VARIANTS:
        if name not in wanted:
            continue
        if path is not None and not path.exists():
            missing.append(name)
            warn(f"{name}: {path} does not exist; skipping {name}"
                 + (" (build it with `make lib`)" if name == "hakmem" else ""))
            continue
        chosen.append((name, path))
    if not chosen:
        die("no allocator left to run")
    return chosen, missing


def select_workloads(arg):
    if not arg:
        return list(WORKLOADS)
    wanted = [w.strip() for w in arg.split(",")]
    for w in wanted:
        if w not in WORKLOAD_NAMES:
            die(f"unknown workload {w!r} (known: {', '.join(WORKLOAD_NAMES)})")
    return [w for w in WORKLOADS if w[0] in wanted]


def parse_threads(arg):
    try:
        ts = sorted({int(t) for t in arg.split(",")})
    except ValueError:
        die(f"--threads wants a list like 1,2 (got {arg!r})")
    if not ts or ts[0] < 1:
        die("--threads values must be >= 1")
    return ts


def machine_info():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def allocator_version(name, path):
    if name.startswith("hakmem-"):
        return " ".join(f"{k}={v}" for k, v in path.variant_env.items())
    if name == "hakmem":
        # hakmem_version() tells the build switches; asked in a child so a
        # broken library cannot take this script down.
        code = ("import ctypes,sys; l=ctypes.CDLL(sys.argv[1]); "
                "l.hakmem_version.restype=ctypes.c_char_p; print(l.hakmem_version().decode())")
        try:
            r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                               text=True, timeout=10)
            return r.stdout.strip() or "version unknown"
        except (OSError, subprocess.TimeoutExpired):
            return "version unknown"
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", PACKAGES[name]],
                           capture_output=True, text=True, timeout=10)
        return f"{PACKAGES[name]} {r.stdout.strip()}" if r.returncode == 0 else PACKAGES[name]
    except (OSError, subprocess.TimeoutExpired):
        return PACKAGES[name]


# --------------------------------------------------------------- summary ---

def fnum(row, key):
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return None


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


class Group:
    """All runs of one (workload, threads, allocator) and their medians."""

    def __init__(self, rows):
        self.rows = rows
        self.ok = [r for r in rows if r["status"] == "ok"]
        self.failures = [r["status"] for r in rows if r["status"] != "ok"]

    def median(self, key):
        vals = [v for v in (fnum(r, key) for r in self.ok) if v is not None]
        return statistics.median(vals) if vals else None

    def median_extra(self, key):
        vals = []
        for r in self.ok:
            m = re.search(rf"(?:^| ){key}=(\S+)", r.get("extra", ""))
            if m:
                vals.append(float(m.group(1)))
        return statistics.median(vals) if vals else None

    def failure_note(self):
        if not self.failures:
            return ""
        kinds = sorted(set(self.failures))
        return f" [{len(self.failures)}/{len(self.rows)} {', '.join(kinds)}]"


def build_groups(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["workload"], int(r["threads"]), r["allocator"]), []).append(r)
    return {k: Group(v) for k, v in groups.items()}


def configs_of(rows):
    seen = []
    for r in rows:
        key = (r["workload"], int(r["threads"]))
        if key not in seen:
            seen.append(key)
    return seen


def label(cfg):
    return f"{cfg[0]} t={cfg[1]}"


def ratio(groups, cfg, alloc, ref, key):
    g, rg = groups.get(cfg + (alloc,)), groups.get(cfg + (ref,))
    if not g or not rg:
        return None
    a, b = g.median(key), rg.median(key)
    return a / b if a and b else None


def si(v):
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if v >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def cell(groups, cfg, alloc, ref, key, fmt):
    g = groups.get(cfg + (alloc,))
    if g is None:
        return "not run"
    if not g.ok:
        return ", ".join(sorted(set(g.failures)))
    text = fmt(g.median(key))
    rat = ratio(groups, cfg, alloc, ref, key) if alloc != ref else None
    if rat is not None:
        text += f" ({rat:.2f}x)"
    return text + g.failure_note()


# The pool issue's targets (README, "Benchmarks"): speed of the Mid and L25
# workloads against the fastest peer, footprint of the fragmentation and
# phase workloads against the leanest peer and against their live bytes.
SPEED_TARGET_WORKLOADS = ("mixed_mid", "mixed_l25")
RSS_TARGET_WORKLOADS = ("frag_stress", "phases")
END_RSS_TARGET = 1.3  # end RSS / live bytes
DECAY_S = 1.0  # HAKMEM_TINY_DECAY_MS's default, in seconds


def targets_section(groups, cfgs, peers):
    def med(cfg, a, key):
        g = groups.get(cfg + (a,))
        return g.median(key) if g and g.ok else None

    def med_extra(cfg, a, key):
        g = groups.get(cfg + (a,))
        return g.median_extra(key) if g and g.ok else None

    rows = []
    speed = [c for c in cfgs if c[0] in SPEED_TARGET_WORKLOADS]
    if speed:
        best = None
        for a in peers:
            gm = geomean([med(c, "hakmem", "seconds") / med(c, a, "seconds")
                          for c in speed if med(c, "hakmem", "seconds") and med(c, a, "seconds")])
            if gm and (best is None or gm > best[1]):
                best = (a, gm)
        if best:
            rows.append(["Mid + L25 time, geomean vs the fastest peer",
                         f"{best[1]:.2f}x {best[0]}'s time", "<= 1.00x",
                         "met" if best[1] <= 1.0 else "not met"])
    for c in cfgs:
        if c[0] not in RSS_TARGET_WORKLOADS:
            continue
        mine = med(c, "hakmem", "peak_rss_kb")
        lows = [(med(c, a, "peak_rss_kb"), a) for a in peers if med(c, a, "peak_rss_kb")]
        if mine and lows:
            low, who = min(lows)
            rows.append([f"{label(c)} peak RSS vs the leanest peer", f"{mine / low:.2f}x {who}'s",
                         "<= 1.00x", "met" if mine <= low else "not met"])
        end, live = med(c, "hakmem", "end_rss_kb"), med(c, "hakmem", "live_bytes")
        if end and live:
            r = end * 1024 / live
            rows.append([f"{label(c)} end RSS / live bytes", f"{r:.2f}x", f"<= {END_RSS_TARGET}x",
                         "met" if r <= END_RSS_TARGET else "not met"])
        # frag_stress ends in full churn, where every allocator's free
        # blocks are its working reserve; the same ratio after 1.5 s idle
        # (the decay time and a tick) says what it keeps once it can give
        # memory back, next to the leanest peer's idle RSS. A shorter sleep
        # (--quick's scale) ends before hakmem's decay: shown, not judged.
        if c[0] == "frag_stress" and live:
            idle = med_extra(c, "hakmem", "rss_idle_kb")
            idle_s = med_extra(c, "hakmem", "idle_seconds") or 0
            judge = (lambda ok: "met" if ok else "not met") if idle_s >= DECAY_S else \
                (lambda ok: f"not judged (idle {idle_s:.1f} s < decay {DECAY_S:.0f} s)")
            if idle:
                r = idle * 1024 / live
                rows.append([f"{label(c)} RSS after {idle_s:.1f} s idle / live bytes", f"{r:.2f}x",
                             f"<= {END_RSS_TARGET}x", judge(r <= END_RSS_TARGET)])
                idles = [(med_extra(c, a, "rss_idle_kb"), a) for a in peers if med_extra(c, a, "rss_idle_kb")]
                if idles:
                    low, who = min(idles)
                    rows.append([f"{label(c)} RSS after {idle_s:.1f} s idle vs the leanest peer",
                                 f"{idle / low:.2f}x {who}'s", "<= 1.00x", judge(idle <= low)])
        # phases ends after an idle pause with ~73 KB live: every process's
        # own RSS (libraries, stack) is some 2 MB, so the ratio above cannot
        # reach 1.3 for any allocator. Next to it: the idle RSS against the
        # leanest peer's (the same program, the same survivors).
        if c[0] == "phases" and end and lows:
            ends = [(med(c, a, "end_rss_kb"), a) for a in peers if med(c, a, "end_rss_kb")]
            if ends:
                low, who = min(ends)
                rows.append([f"{label(c)} idle RSS vs the leanest peer", f"{end / low:.2f}x {who}'s", "<= 1.00x",
                             "met" if end <= low else "not met"])
            # The same ratio with what no allocator controls taken out: the
            # RSS the idle process holds above its own before the first
            # allocation, against the pages its survivors touch (the least
            # an allocator that does not move blocks can keep). Shown, not
            # judged: the target is the ratio above.
            start = med_extra(c, "hakmem", "rss_start_kb")
            floor = med_extra(c, "hakmem", "live_pages_kb")
            if start and floor:
                rows.append([f"{label(c)} idle RSS above the process's start / the survivors' pages",
                             f"{(end - start) / floor:.2f}x", "-", "shown, not judged"])
    if not rows:
        return []
    return ["## Targets (Mid/L25 speed, fragmentation and phase footprint)", "",
            md_table(["target", "hakmem", "goal", ""], rows), ""]


def summarize(rows, allocs, ref, missing, meta, out_dir):
    groups = build_groups(rows)
    cfgs = configs_of(rows)
    names = [a for a, _ in allocs]
    peers = [a for a in names if a != ref]
    mib = lambda kb: f"{kb / 1024:.1f}"  # noqa: E731

    # summary.csv
    with open(out_dir / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "threads", "allocator", "runs", "ok_runs", "failures",
                    "median_seconds", "median_ops_per_s", "median_peak_rss_kb",
                    "median_end_rss_kb", "median_live_bytes", "reference",
                    "time_ratio_vs_reference", "peak_rss_ratio_vs_reference"])
        for cfg in cfgs:
            for a in names:
                g = groups.get(cfg + (a,))
                if not g:
                    continue
                vals = [g.median(k) for k in ("seconds", "ops_per_s", "peak_rss_kb",
                                              "end_rss_kb", "live_bytes")]
                rt, rr = (ratio(groups, cfg, a, ref, k) for k in ("seconds", "peak_rss_kb"))
                w.writerow(list(cfg) + [a, len(g.rows), len(g.ok), ";".join(g.failures)]
                           + ["" if v is None else f"{v:.6g}" for v in vals]
                           + [ref] + ["" if v is None else f"{v:.4f}" for v in (rt, rr)])
        for a in peers:
            gt = geomean([ratio(groups, c, a, ref, "seconds") for c in cfgs])
            gr = geomean([ratio(groups, c, a, ref, "peak_rss_kb") for c in cfgs])
            w.writerow(["GEOMEAN", "", a, "", "", "", "", "", "", "", "", ref]
                       + ["" if v is None else f"{v:.4f}" for v in (gt, gr)])

    md = [f"# hakmem benchmarks ({meta['mode']})", ""]
    md += [f"- {k}: {v}" for k, v in meta["lines"]]
    if missing:
        md.append(f"- **not run: {', '.join(missing)}** (library missing; see warnings)")
    md.append("")

    def geo_row(key):
        row = ["**geomean of ratios**"]
        for a in names:
            gm = geomean([ratio(groups, c, a, ref, key) for c in cfgs]) if a != ref else None
            row.append("reference" if a == ref else f"{gm:.2f}x" if gm else "n/a")
        return row

    md += [f"## Time (median seconds; ratio = peer time / {ref} time, >1 means {ref} is faster)",
           ""]
    trows = [[label(c)] + [cell(groups, c, a, ref, "seconds", lambda v: f"{v:.3g}")
                           for a in names] for c in cfgs]
    md += [md_table(["workload"] + names, trows + [geo_row("seconds")]), ""]

    md += ["## Throughput (median ops/s, k = 10^3, M = 10^6; see README for what an op is)", ""]
    orows = [[label(c)] + [cell(groups, c, a, a, "ops_per_s", si)
                           for a in names] for c in cfgs]
    md += [md_table(["workload"] + names, orows), ""]

    md += [f"## Peak RSS (median MiB; ratio = peer / {ref}, >1 means {ref} uses less)", ""]
    prows = [[label(c)] + [cell(groups, c, a, ref, "peak_rss_kb", mib) for a in names]
             for c in cfgs]
    md += [md_table(["workload"] + names, prows + [geo_row("peak_rss_kb")]), ""]

    live_cfgs = [c for c in cfgs if c[0] in LIVE_WORKLOADS]
    if live_cfgs:
        md += ["## End RSS vs live bytes (MiB; in brackets end RSS / live, 1.0 would be "
               "no overhead at all)", ""]
        lrows = []
        for c in live_cfgs:
            lives = [groups[c + (a,)].median("live_bytes") for a in names
                     if c + (a,) in groups and groups[c + (a,)].ok]
            live = lives[0] if lives else None
            row = [label(c), f"{live / 2**20:.2f}" if live else "n/a"]
            for a in names:
                g = groups.get(c + (a,))
                if not g or not g.ok:
                    row.append(", ".join(sorted(set(g.failures))) if g else "not run")
                    continue
                end = g.median("end_rss_kb")
                over = f" ({end * 1024 / live:.1f}x live)" if live else ""
                row.append(f"{end / 1024:.1f}{over}{g.failure_note()}")
            lrows.append(row)
        md += [md_table(["workload", "live MiB"] + names, lrows), ""]

    for wl, keys, title in (("phases", PHASE_KEYS, "phases: RSS after each phase (median MiB)"),
                            ("frag_stress", FRAG_KEYS,
                             "frag_stress: RSS at the end of each stage (median MiB)")):
        cfg = next((c for c in cfgs if c[0] == wl), None)
        if not cfg:
            continue
        md += [f"## {title}", ""]
        hrows = []
        for a in names:
            g = groups.get(cfg + (a,))
            if not g or not g.ok:
                why = ", ".join(sorted(set(g.failures))) if g else "not run"
                hrows.append([a] + [why] * len(keys))
                continue
            vals = [g.median(k) if k == "end_rss_kb" else g.median_extra(k) for k in keys]
            hrows.append([a] + ["n/a" if v is None else mib(v) for v in vals])
        md += [md_table(["allocator"] + [k.replace("_kb", "") for k in keys], hrows), ""]

    if ref == "hakmem" and peers:
        md += targets_section(groups, cfgs, peers)

    failed = [r for r in rows if r["status"] != "ok"]
    md += ["## Failed runs", ""]
    if failed:
        for r in failed:
            tail = " / ".join(r.get("stderr_tail") or []) or "no stderr"
            md.append(f"- {r['workload']} t={r['threads']} {r['allocator']} run {r['run']}: "
                      f"{r['status']}: {tail[:300]}")
    else:
        md.append("None.")
    md.append("")
    text = "\n".join(md)
    (out_dir / "summary.md").write_text(text)
    return text, groups, cfgs


# ------------------------------------------------------------------ plots --

def gnuplot_terminal():
    try:
        r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True,
                           timeout=20)
        terms = r.stdout + r.stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    return "pngcairo" if "pngcairo" in terms else "png"


def run_gnuplot(script_path, script):
    script_path.write_text(script)
    r = subprocess.run(["gnuplot", str(script_path)], capture_output=True, text=True)
    if r.returncode != 0:
        warn(f"gnuplot failed on {script_path}: {r.stderr.strip()[:300]}")


def plot_all(groups, cfgs, allocs, ref, out_dir, traces):
    if not shutil.which("gnuplot"):
        warn("gnuplot not found; no plots")
        return
    term = gnuplot_terminal() or "png"
    pdir = out_dir / "plots"
    pdir.mkdir(exist_ok=True)
    names = [a for a, _ in allocs]
    peers = [a for a in names if a != ref]
    head = (f"set terminal {term} size 1400,650\nset datafile missing 'NaN'\n"
            "set style data histograms\nset style histogram clustered gap 1\n"
            "set style fill solid 0.85 border -1\nset boxwidth 0.9\nset grid ytics\n"
            "set xtics rotate by -35 left noenhanced\nset key outside right top noenhanced\n"
            "set bmargin 9\n")

    def histogram(fname, cols, transform, title, ylabel, extra):
        table = [(c, [transform(c, a) for a in cols]) for c in cfgs]
        if all(v is None for _, vals in table for v in vals):
            warn(f"no successful runs to plot: {fname}.png not drawn")
            return
        data = pdir / f"{fname}.dat"
        with open(data, "w") as f:
            f.write("# config " + " ".join(cols) + "\n")
            for c, vals in table:
                f.write(label(c).replace(" ", "_") + " "
                        + " ".join("NaN" if v is None else f"{v:.6g}" for v in vals) + "\n")
        plots = ", ".join(f"'{data}' using {i + 2}:xtic(1) title '{a}'"
                          for i, a in enumerate(cols))
        run_gnuplot(pdir / f"{fname}.gp",
                    head + f"set output '{out_dir / (fname + '.png')}'\n"
                    f"set title '{title}' noenhanced\nset ylabel '{ylabel}'\n{extra}plot {plots}\n")

    if peers:
        ratios = [v for c in cfgs for a in peers
                  for v in [ratio(groups, c, a, ref, "seconds")] if v]
        lo = min([0.25] + [v / 1.5 for v in ratios])
        hi = max([4.0] + [v * 1.5 for v in ratios])
        histogram("time_ratio", peers,
                  lambda c, a: ratio(groups, c, a, ref, "seconds"),
                  f"Time ratio peer / {ref} (median; >1 means {ref} is faster)",
                  f"peer time / {ref} time (log scale)",
                  f"set logscale y 2\nset yrange [{lo:.4g}:{hi:.4g}]\n"
                  "set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb 'black'\n")
    else:
        warn(f"only {ref} ran: no time ratio plot")

    def peak(c, a):
        g = groups.get(c + (a,))
        v = g.median("peak_rss_kb") if g else None
        return v / 1024 if v else None

    histogram("peak_rss", names, peak, "Peak RSS (median VmHWM)",
              "MiB (log scale)", "set logscale y 10\n")

    if traces:
        lines = []
        for a in names:
            if a in traces:
                lines.append(f"'{traces[a]}' using 1:($2/1024) with lines lw 2 title '{a} RSS'")
        first = next(iter(traces.values()))
        lines.append(f"'{first}' using 1:($3/1048576) with lines dt 2 lw 2 lc rgb 'black' "
                     "title 'live bytes'")
        run_gnuplot(pdir / "frag_rss_over_time.gp",
                    f"set terminal {term} size 1200,600\nset output "
                    f"'{out_dir / 'frag_rss_over_time.png'}'\n"
                    "set title 'frag_stress: RSS over time (stages: small to 30%, drift to mid "
                    "to 60%, then mixed; then idle, calling nothing)' noenhanced\nset xlabel 'seconds'\nset ylabel 'MiB'\n"
                    "set grid\nset key outside right top noenhanced\nset yrange [0:*]\n"
                    "plot " + ", ".join(lines) + "\n")
    else:
        warn("no frag_stress trace: frag_rss_over_time.png not drawn")


# ------------------------------------------------------------------ bench --

def bench_mode(args, mode):
    allocs, missing = select_allocators(args.allocs)
    workloads = select_workloads(args.workloads)
    threads = parse_threads(args.threads)
    runs = args.runs or (5 if mode == "full" else 1)
    timeout = args.timeout or (120.0 if mode == "full" else 30.0)
    ref = allocs[0][0]  # hakmem when present, else the next one (glibc)
    out_dir = Path(args.out)
    (out_dir / "traces").mkdir(parents=True, exist_ok=True)
    # Outputs of an earlier run must not pass for this run's.
    for old in [out_dir / f"{p}.png" for p in ("time_ratio", "peak_rss", "frag_rss_over_time")] \
            + list((out_dir / "traces").glob("frag_stress.*.txt")):
        old.unlink(missing_ok=True)
    ensure_binaries([w[0] for w in workloads])
    if ref != "hakmem":
        warn(f"hakmem is not part of this run: ratios are relative to {ref}")

    plan = []
    for name, threaded, quick_scale in workloads:
        scale = args.scale or (1.0 if mode == "full" else quick_scale)
        for t in (threads if threaded else [1]):
            for r in range(1, runs + 1):
                for alloc, path in allocs:  # interleaved, so drift hits all alike
                    plan.append((name, t, scale, r, alloc, path))

    meta_lines = [
        ("date", datetime.datetime.now().isoformat(timespec="seconds")),
        ("machine", machine_info()),
        ("mode", f"{mode}: {runs} run(s) per cell, scale "
                 + (f"{args.scale:g}" if args.scale else ("1.0" if mode == "full" else
                                                           "0.1 (quick)"))
                 + f", threads {','.join(map(str, threads))}, timeout {timeout:g}s per run"),
        ("reference", f"{ref} (ratios are peer / {ref})"),
    ]
    meta_lines += [(a, f"{allocator_version(a, p)} ({p or 'no LD_PRELOAD'})") for a, p in allocs]

    rows, traces = [], {}
    results_path = out_dir / "results.csv"
    t_start = time.monotonic()
    with open(results_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        try:
            for i, (name, t, scale, r, alloc, path) in enumerate(plan, 1):
                print(f"[{i}/{len(plan)}] {name} t={t} {alloc} run {r}/{runs} ... ", end="",
                      flush=True)
                extra_env = {}
                trace = out_dir / "traces" / f"frag_stress.{alloc}.run{r}.txt"
                if name == "frag_stress":
                    extra_env["BENCH_RSS_TRACE"] = str(trace)
                row = run_workload(name, t, alloc, path, scale, timeout, extra_env)
                row["run"] = r
                rows.append(row)
                writer.writerow(row)
                f.flush()
                if row["status"] == "ok":
                    if name == "frag_stress" and trace.exists() and alloc not in traces:
                        traces[alloc] = trace
                    print(f"{float(row['seconds']):.3f} s, peak "
                          f"{float(row['peak_rss_kb']) / 1024:.1f} MiB", flush=True)
                else:
                    print(row["status"], flush=True)
                    for line in row["stderr_tail"]:
                        print(f"    {line[:200]}", flush=True)
        except KeyboardInterrupt:
            print("\ninterrupted: summarizing the runs done so far", flush=True)
            meta_lines.append(("interrupted", f"after {len(rows)} of {len(plan)} runs"))
    elapsed = time.monotonic() - t_start
    meta_lines.append(("wall time", f"{elapsed:.1f} s for {len(rows)} runs"))

    text, groups, cfgs = summarize(rows, allocs, ref, missing,
                                   {"mode": mode, "lines": meta_lines}, out_dir)
    plot_all(groups, cfgs, allocs, ref, out_dir, traces)
    print()
    print(text)
    print(f"results: {results_path}, {out_dir / 'summary.csv'}, {out_dir / 'summary.md'}, "
          f"plots in {out_dir} ({elapsed:.1f} s)")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


# ------------------------------------------------------------ callgrind ----

def parse_callgrind(path):
    """Self cost per object file and the object each of malloc/free was found in."""
    names = {"ob": {}, "fn": {}}
    self_cost, where = {}, {}
    ob = fn = None
    skip_next = False
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                kind = m.group(1).lstrip("c")
                if m.group(3) is not None:
                    names[kind][m.group(2)] = m.group(3)
                name = names[kind].get(m.group(2), "?")
                if m.group(1) == "ob":
                    ob = name
                elif m.group(1) == "fn":
                    fn = name
                    if fn in ("malloc", "free"):
                        where.setdefault(fn, ob)
                continue
            if line.startswith("calls="):
                skip_next = True  # the next cost line is the callee's inclusive cost
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    self_cost[ob] = self_cost.get(ob, 0) + int(parts[1])
    return self_cost, where


def callgrind_run(workload, preload, ops, env_extra, threads=1):
    """(total Ir, Ir inside the allocator's object, object holding malloc)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = alloc_env(preload, dict(env_extra, BENCH_OPS=str(ops)))
        cmd = ["valgrind", "--tool=callgrind", "--trace-children=no",
               f"--callgrind-out-file={out}", str(BIN_DIR / workload), "1", str(threads)]
        rc, _, err, _ = run_process(cmd, env, 600)
        m = re.search(r"Collected : (\d+)", err)
        if rc != 0 or not m:
            raise RuntimeError(f"callgrind {workload} failed ({describe_rc(rc)}): "
                               + " / ".join(err.strip().splitlines()[-3:]))
        self_cost, where = parse_callgrind(out)
    in_alloc = sum(v for k, v in self_cost.items() if k in allocator_objects(preload, k))
    return int(m.group(1)), in_alloc, where.get("malloc") or "?"


def allocator_objects(preload, candidate):
    """Object names callgrind may give the allocator's code. A preloaded
    library is reported under its real path (libmimalloc.so.2 is a link to
    libmimalloc.so.2.0) and tcmalloc keeps malloc/free in its own
    "google_malloc" ELF section, which valgrind cannot map back to the file
    and names "???"; the little else that lands in "???" is start-up code,
    which the two-count difference cancels."""
    if preload is None:
        return {candidate} if candidate and candidate.endswith("/libc.so.6") else set()
    return {str(Path(preload).resolve()), "???"}


def per_op(workload, preload, n1, n2, env_extra):
    """Instructions per op by the two-count difference, plus the malloc object."""
    t1, a1, _ = callgrind_run(workload, preload, n1, env_extra)
    t2, a2, malloc_obj = callgrind_run(workload, preload, n2, env_extra)
    return (t2 - t1) / (n2 - n1), (a2 - a1) / (n2 - n1), malloc_obj


def instr_mode(args):
    if not shutil.which("valgrind"):
        die("valgrind is not installed (apt-get install valgrind); --instr needs callgrind")
    allocs, missing = select_allocators(args.allocs)
    ref = allocs[0][0]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ensure_binaries(sorted({c[1] for c in INSTR_CASES}))
    results = {}
    rows = []
    total = len(INSTR_CASES) * len(allocs)
    i = 0
    for case, workload, env_extra in INSTR_CASES:
        for alloc, path in allocs:
            i += 1
            print(f"[{i}/{total}] {case} {alloc}: callgrind at {INSTR_N1} and {INSTR_N2} ops ... ",
                  end="", flush=True)
            try:
                tot, inside, malloc_obj = per_op(workload, path, INSTR_N1, INSTR_N2, env_extra)
            except RuntimeError as e:
                print(str(e), flush=True)
                rows.append({"case": case, "allocator": alloc, "status": str(e)})
                continue
            verified = malloc_obj in allocator_objects(path, malloc_obj)
            results[(case, alloc)] = (tot, inside)
            rows.append({"case": case, "allocator": alloc, "status": "ok",
                         "instr_per_op": f"{tot:.1f}",
                         "instr_in_allocator_per_op": f"{inside:.1f}",
                         "malloc_object": malloc_obj,
                         "preload_verified": "yes" if verified else "NO"})
            print(f"{tot:.1f} instr/op ({inside:.1f} in allocator), malloc in {malloc_obj}"
                  + ("" if verified else "  <-- NOT the requested allocator"), flush=True)

    with open(out_dir / "instr.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case", "allocator", "status", "instr_per_op",
                                          "instr_in_allocator_per_op", "malloc_object",
                                          "preload_verified"])
        w.writeheader()
        w.writerows(rows)
    names = [a for a, _ in allocs]
    table = []
    for case, _, _ in INSTR_CASES:
        row = [case]
        for a in names:
            r = results.get((case, a))
            if not r:
                st = next((x["status"] for x in rows if x["case"] == case and x["allocator"] == a),
                          "not run")
                row.append(st[:60])
                continue
            text = f"{r[0]:.1f} / {r[1]:.1f}"
            if a != ref and results.get((case, ref)):
                text += f" ({r[0] / results[(case, ref)][0]:.2f}x)"
            row.append(text)
        table.append(row)
    unverified = [f"{x['case']} {x['allocator']}" for x in rows
                  if x.get("preload_verified") == "NO"]
    md = ["# Instructions per malloc+free (callgrind)", "",
          f"- machine: {machine_info()}",
          f"- method: Ir(N2) - Ir(N1) over N2 - N1 ops, N1={INSTR_N1}, N2={INSTR_N2}; "
          "an op is one malloc+free pair (tiny_bands: one replacement, i.e. free + malloc)",
          "- cell: total instructions per op / of which inside the allocator's library; "
          f"ratio = peer total / {ref} total (>1 means {ref} runs fewer instructions)",
          "- the total includes the harness loop (RNG, 2-byte touch, check): the same "
          "code for every allocator",
          "- callgrind kept the preloaded allocator (malloc resolved into its library): "
          + ("yes, every run" if not unverified else "NO for " + ", ".join(unverified))]
    if missing:
        md.append(f"- **not run: {', '.join(missing)}** (library missing)")
    md += ["", md_table(["case"] + names, table), ""]
    text = "\n".join(md)
    (out_dir / "instr.md").write_text(text)
    print()
    print(text)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


# ---------------------------------------------------------------- probes ---

def bpftrace_unavailable():
    if os.geteuid() != 0:
        return "not root (bpftrace needs CAP_BPF/CAP_PERFMON)"
    if not shutil.which("bpftrace"):
        return "bpftrace not installed"
    return None


class Tracer:
    """bpftrace counting every hakmem USDT probe in one library file."""

    def __init__(self, lib):
        script = (f"usdt:{lib}:hakmem:* {{ @[probe] = count(); }} "
                  "BEGIN { printf(\"READY\\n\"); }")
        self.proc = subprocess.Popen(["bpftrace", "-B", "line", "--usdt-file-activation", "-e",
                                      script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.lines, self.err = [], []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            # "Attaching N probes..." comes first; BEGIN fires once they are attached.
            if line.startswith("READY"):
                self.ready.set()
        self.ready.set()

    def wait_ready(self, timeout=60):
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError("bpftrace did not attach: " + "".join(self.err[-3:]).strip())

    def stop(self):
        """SIGINT makes bpftrace print its map; returns {probe: hits}."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        time.sleep(0.1)  # let the reader threads drain the pipes
        hits = {}
        for line in self.lines:
            m = re.match(r"@\[(.*)\]: (\d+)", line.strip())
            if m:
                hits[m.group(1).rsplit(":", 1)[-1]] = int(m.group(2))
        return hits


def count_probes(lib):
    try:
        r = subprocess.run(["readelf", "-n", str(lib)], capture_output=True, text=True)
        return len(re.findall(r"Provider: hakmem", r.stdout))
    except OSError:
        return None


def probes_mode(args):
    default_lib = REPO / "build" / "libhakmem.so"
    if not default_lib.exists():
        die(f"{default_lib} does not exist: --probes compares hakmem builds (run `make lib`)")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    workloads = select_workloads(args.workloads)
    threads = parse_threads(args.threads)
    runs = args.runs or 3
    scale = args.scale or 0.3
    timeout = args.timeout or 120.0
    ensure_binaries([w[0] for w in workloads])

    print("building the USDT=0 variant into build-usdt0/ ...", flush=True)
    r = subprocess.run(["make", "-s", "-C", str(REPO), "BUILD=build-usdt0", "USDT=0", "lib"],
                       capture_output=True, text=True)
    usdt0_lib = REPO / "build-usdt0" / "libhakmem.so"
    notes = [f"- machine: {machine_info()}",
             f"- probes in the default build: {count_probes(default_lib)}; in the USDT=0 "
             f"build: {count_probes(usdt0_lib) if usdt0_lib.exists() else 'n/a'}"]
    if r.returncode != 0 or not usdt0_lib.exists():
        warn("USDT=0 build failed: " + (r.stderr.strip().splitlines() or ["?"])[-1])
        notes.append("- USDT=0 build failed: its columns are empty")
        usdt0_lib = None
    no_trace = bpftrace_unavailable()
    if no_trace:
        notes.append(f"- traced column skipped: {no_trace}")
    variants = [("default", default_lib)] + ([("usdt0", usdt0_lib)] if usdt0_lib else [])

    instr = {}
    if shutil.which("valgrind"):
        for name, _, _ in workloads:
            if name not in PROBE_INSTR_OPS:
                continue
            n1, n2 = PROBE_INSTR_OPS[name]
            for v, lib in variants:
                print(f"callgrind {name} {v} ... ", end="", flush=True)
                try:
                    instr[(name, v)] = per_op(name, lib, n1, n2, {})[0]
                    print(f"{instr[(name, v)]:.1f} instr/op", flush=True)
                except RuntimeError as e:
                    print(e, flush=True)
    else:
        notes.append("- instruction columns skipped: valgrind not installed")

    plan = []
    for name, threaded, _ in workloads:
        for t in (threads if threaded else [1]):
            for run in range(1, runs + 1):
                order = variants + ([] if no_trace else [("traced", default_lib)])
                # Rotated per run, so that no variant always runs first.
                shift = (run - 1) % len(order)
                for v, lib in order[shift:] + order[:shift]:
                    plan.append((name, t, run, v, lib))
    times, hits, hit_rows, failures = {}, {}, [], []
    for i, (name, t, run, v, lib) in enumerate(plan, 1):
        print(f"[{i}/{len(plan)}] {name} t={t} {v} run {run}/{runs} ... ", end="", flush=True)
        tracer = None
        try:
            if v == "traced":
                tracer = Tracer(default_lib)
                tracer.wait_ready()
            # Tracing costs a kernel trap per probe hit: give it more time.
            row = run_workload(name, t, f"hakmem-{v}", lib, scale,
                               timeout * (5 if v == "traced" else 1))
        except RuntimeError as e:
            row = {"status": str(e)}
        finally:
            counts = tracer.stop() if tracer else None
        key = (name, t)
        if row["status"] != "ok":
            failures.append(f"{name} t={t} {v} run {run}: {row['status']}")
            print(row["status"], flush=True)
            continue
        times.setdefault(key + (v,), []).append(float(row["seconds"]))
        msg = f"{float(row['seconds']):.3f} s"
        if counts is not None:
            total_hits = sum(counts.values())
            hits.setdefault(key, []).append(total_hits)
            hit_rows += [{"workload": name, "threads": t, "run": run, "probe": p, "hits": n}
                         for p, n in sorted(counts.items())]
            msg += f", {total_hits} probe hits"
        print(msg, flush=True)

    with open(out_dir / "probes_hits.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["workload", "threads", "run", "probe", "hits"])
        w.writeheader()
        w.writerows(hit_rows)
    header = ["workload", "instr default", "instr USDT=0", "delta %", "time default",
              "time USDT=0", "time traced", "probe hits"]
    table, csv_rows = [], []
    for name, threaded, _ in workloads:
        for t in (threads if threaded else [1]):
            key = (name, t)
            i_def, i_off = instr.get((name, "default")), instr.get((name, "usdt0"))
            delta = round((i_def - i_off) / i_off * 100, 1) + 0.0 if i_def and i_off else None
            med = {v: statistics.median(times[key + (v,)]) if key + (v,) in times else None
                   for v in ("default", "usdt0", "traced")}
            h = statistics.median(hits[key]) if key in hits else None
            vals = [f"{i_def:.1f}" if i_def else "n/a", f"{i_off:.1f}" if i_off else "n/a",
                    f"{delta:+.1f}" if delta is not None else "n/a"]
            vals += [f"{med[v]:.3f}" if med[v] else "n/a" for v in ("default", "usdt0", "traced")]
            vals.append(f"{h:.0f}" if h is not None else ("skipped" if no_trace else "n/a"))
            table.append([f"{name} t={t}"] + vals)
            csv_rows.append([name, t] + vals)
    with open(out_dir / "probes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "threads"] + header[1:])
        w.writerows(csv_rows)
    md = ["# hakmem probes: default build vs USDT=0 vs traced", ""] + notes + [
        f"- time: median seconds of {runs} run(s) at scale {scale:g}; instr: instructions per "
        "op by the two-count callgrind method (n/a: workload not measured that way)",
        "- traced: default build with `bpftrace -e 'usdt:LIB:hakmem:* { @[probe] = count(); }'`"
        " attached; probe hits = median total over the runs (per probe: probes_hits.csv)", ""]
    md += [md_table(header, table), ""]
    if failures:
        md += ["Failed runs:", ""] + [f"- {x}" for x in failures] + [""]
    text = "\n".join(md)
    (out_dir / "probes.md").write_text(text)
    print()
    print(text)
    return 0 if not failures else 1


# ------------------------------------------------------------------ main ---

def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="5 runs per cell at scale 1.0")
    mode.add_argument("--quick", action="store_true", help="1 run per cell at scale 0.1 (default)")
    mode.add_argument("--instr", action="store_true", help="callgrind instructions per op")
    mode.add_argument("--probes", action="store_true", help="USDT cost: default/USDT=0/traced")
    p.add_argument("--allocs", help="comma list of: " + ",".join(a for a, _ in ALLOCATORS + VARIANTS))
    p.add_argument("--workloads", help="comma list of: " + ",".join(WORKLOAD_NAMES))
    p.add_argument("--runs", type=int, help="runs per cell (full 5, quick 1, probes 3)")
    p.add_argument("--threads", default="1,2",
                   help="thread counts for the multi-threaded workloads (default 1,2)")
    p.add_argument("--scale", type=float, help="override the op-count scale (probes: 0.3)")
    p.add_argument("--timeout", type=float, help="seconds per run (full 120, quick 30)")
    p.add_argument("--out", default=str(REPO / "build" / "bench"), help="output folder")
    p.add_argument("--hakmem", help="benchmark this libhakmem.so instead of build/libhakmem.so "
                   "(e.g. another build folder)")
    args = p.parse_args()
    if args.runs is not None and args.runs < 1:
        die("--runs must be >= 1")
    if args.hakmem:
        ALLOCATORS[0] = ("hakmem", Path(args.hakmem).resolve())
    if args.instr:
        return instr_mode(args)
    if args.probes:
        return probes_mode(args)
    return bench_mode(args, "full" if args.full else "quick")


if __name__ == "__main__":
    sys.exit(main())
