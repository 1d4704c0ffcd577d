"""The Tiny tier from one thread (tests/c/tiny_classes.c): the size-class
map for every size 1..32768, the routing profiles, the HAKMEM_TINY_SS_MAX_MB
cap, RSS after the live set drops; and, as root with bpftrace, the
thread-cache capacity rules (tiny_spill / tiny_refill compared event by
event with a model of the rules), the cap's tiny_fallback events and the
SuperSlab tier transitions (ss_tier)."""
import re

import pytest

from conftest import (GLIBC_MODE, bpftrace_run, build_program, check_ok, check_subtest_list, describe,
                      hakmem_only, needs_root, run_subtest)

PROGRAM = "tiny_classes"
SUBTESTS = ["class_map", "routing", "cap", "spill", "tiering", "rss_drop", "ss_reserve", "decay", "shrink"]


def test_tiny_subtest_list():
    check_subtest_list(PROGRAM, SUBTESTS)


@pytest.mark.timeout(60)
def test_class_map_every_size():
    run_subtest(PROGRAM, "class_map", timeout=30)


# ---- routing ---------------------------------------------------------------

# What each configuration does to 16, 600 and 1000 bytes: (tier, fallbacks
# per 200 mallocs). A band routed away is served by the first 1-32 KiB class
# (tier MID) and every malloc of it counts one tiny_fallback.
TINY, AWAY = ("TINY", 0), ("MID", 200)
# Tests that count every allocation or event of a thread run without the
# decay thread: its creation (pthread_create allocates, from whichever
# thread first reaches a slow path) would be counted too.
EXACT = {"HAKMEM_DECAY_THREAD": "0"}
ROUTES = {
    "conservative": ({"HAKMEM_TINY_PROFILE": "conservative"}, {16: TINY, 600: TINY, 1000: TINY}),
    "full": ({"HAKMEM_TINY_PROFILE": "full"}, {16: TINY, 600: TINY, 1000: TINY}),
    # hot: only band C7 (513..1024 bytes) goes away
    "hot": ({"HAKMEM_TINY_PROFILE": "hot"}, {16: TINY, 600: AWAY, 1000: AWAY}),
    "off": ({"HAKMEM_TINY_PROFILE": "off"}, {16: AWAY, 600: AWAY, 1000: AWAY}),
    "wrap_tiny_0": ({"HAKMEM_WRAP_TINY": "0"}, {16: AWAY, 600: AWAY, 1000: AWAY}),
    "use_superslab_0": ({"HAKMEM_TINY_USE_SUPERSLAB": "0"}, {16: AWAY, 600: AWAY, 1000: AWAY}),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("config", list(ROUTES))
def test_routing_profiles(config):
    env, expected = ROUTES[config]
    proc = run_subtest(PROGRAM, "routing", env={**env, **EXACT}, timeout=30)
    if GLIBC_MODE:
        return
    seen = {int(s): (t, int(f)) for s, t, f in
            re.findall(r"^route size=(\d+) tier=(\w+) fallbacks=(\d+)$", proc.stdout, re.M)}
    assert seen == expected, f"{env}: (tier, fallbacks per 200 mallocs) by size\n{describe(proc)}"


# ---- the cap ---------------------------------------------------------------

CAP_ENV = {"HAKMEM_TINY_SS_MAX_MB": "1"}


def cap_results(proc):
    rounds = re.findall(r"^cap round=(\d) tiny=(\d+) fallbacks=(\d+)$", proc.stdout, re.M)
    assert len(rounds) == 2, describe(proc)
    return [(int(t), int(f)) for _, t, f in rounds]


@pytest.mark.timeout(60)
def test_cap_falls_back_and_keeps_contents():
    proc = run_subtest(PROGRAM, "cap", env=CAP_ENV, timeout=40)
    if not GLIBC_MODE:
        for tiny, fallbacks in cap_results(proc):
            # 1 MiB of 64 KiB slabs of 64-byte blocks, less what other classes hold
            assert 0 < tiny <= 16384 and tiny + fallbacks == 8 * 2**20 // 64, describe(proc)


@needs_root
@pytest.mark.timeout(90)
def test_cap_fallback_probe():
    program = "usdt:{lib}:hakmem:tiny_fallback {{ @fb[pid, arg0, arg1, arg2] = count(); }}\n"
    proc, pid, trace = bpftrace_run(program, [build_program(PROGRAM), "cap"], env=CAP_ENV, timeout=40)
    check_ok(proc)
    events = {(int(r), int(b), int(s)): int(n) for p, r, b, s, n in
              re.findall(r"^@fb\[(\d+), (\d+), (\d+), (\d+)\]: (\d+)$", trace, re.M) if int(p) == pid}
    total = sum(f for _, f in cap_results(proc))
    # reason 0 (cap), band 3 (33..64 bytes), 64 bytes asked: once per block not in the Tiny tier
    assert events == {(0, 3, 64): total}, f"tiny_fallback events of pid {pid}: {events}\n{trace[-3000:]}"


# ---- thread-cache capacity rules ----------------------------------------------

def classes_of(size):
    return next(i for i, c in enumerate(
        [8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024])
        if c >= size)


# src/tiny.c DRAIN_SPILLS
DRAIN_SPILLS = 4


def cache_model(limit, cap, refill, count, rounds):
    """The events the rules predict for one thread that mallocs `count`
    blocks of one class, then frees them, `rounds` times, starting empty:
    a list of ("refill", blocks, "magazine" | "slabs") and ("spill", blocks,
    target) in order.

    malloc: a hit pops the SLL; a miss refills it with up to `refill`
    blocks from the magazine (all it has, if fewer), else `refill` from the
    slabs. free: pushes onto the SLL; when that makes it longer than `limit`
    it keeps limit/2 and moves the rest to the magazine (spill target 0,
    reported after the moves); a push onto a magazine already holding `cap`
    blocks first sends its older half (cap - cap/2) to the slabs (target 1).
    The DRAIN_SPILLS-th target-1 spill with no miss in between marks the
    class as draining: once that free is done, the whole cache (SLL and
    magazine) goes back (target 2), and later frees go straight to their
    slabs (no event) until the next miss."""
    sll = mag = 0
    spills_since_miss = 0
    draining = False
    events = []
    for _ in range(rounds):
        for _ in range(count):
            if sll:
                sll -= 1
                continue
            spills_since_miss = 0
            draining = False
            if mag:
                got = min(refill, mag)
                mag -= got
                events.append(("refill", got, "magazine"))
            else:
                got = refill
                events.append(("refill", got, "slabs"))
            sll += got - 1
        for _ in range(count):
            if draining:
                continue
            sll += 1
            pending = False
            if sll > limit:
                keep = limit // 2
                moved = sll - keep
                sll = keep
                for _ in range(moved):
                    if mag >= cap:
                        out = mag - mag // 2
                        mag -= out
                        events.append(("spill", out, 1))
                        spills_since_miss += 1
                        pending = pending or spills_since_miss >= DRAIN_SPILLS
                    mag += 1
                events.append(("spill", moved, 0))
            if pending:
                events.append(("spill", sll + mag, 2))
                sll = mag = 0
                draining = True
    return events


# Configurations and, per size, the (SLL limit, magazine cap, refill) the
# rules give: the SLL limit is cap x HAKMEM_SLL_MULTIPLIER for classes up to
# 64 bytes (bands C0..C3), cap otherwise, plus HAKMEM_TINY_SPILL_HYST; the
# refill is HAKMEM_TINY_REFILL_MAX_HOT (hot bands) or _REFILL_MAX, clamped to
# the SLL capacity and the magazine cap.
CACHE_CONFIGS = {
    "cap16_mult2": ({"HAKMEM_TINY_MAG_CAP": "16", "HAKMEM_SLL_MULTIPLIER": "2"},
                    {32: (32, 16, 16), 200: (16, 16, 16)}),
    "refill_max_hyst": ({"HAKMEM_TINY_MAG_CAP": "64", "HAKMEM_SLL_MULTIPLIER": "3",
                         "HAKMEM_TINY_REFILL_MAX_HOT": "12", "HAKMEM_TINY_REFILL_MAX": "5",
                         "HAKMEM_TINY_SPILL_HYST": "3"},
                        {32: (195, 64, 12), 200: (67, 64, 5)}),
    "per_band_cap": ({"HAKMEM_TINY_MAG_CAP": "40", "HAKMEM_TINY_MAG_CAP_C2": "24",
                      "HAKMEM_SLL_MULTIPLIER": "4"},
                     {32: (96, 24, 24), 200: (40, 40, 40)}),
}
CACHE_CASES = [(c, s) for c in CACHE_CONFIGS for s in (32, 200)]
# Events go into maps, which bpftrace prints whole at exit (printf output
# still in its buffers when it is interrupted can be lost), numbered per
# thread: value = kind (1 spill, 2 refill) * 10^12 + class * 10^9 +
# blocks * 10 + target or source.
SPILL_PROGRAM = """
usdt:{lib}:hakmem:tiny_spill {{ @n[tid] = @n[tid] + 1; @ev[pid, tid, @n[tid]] = 1000000000000 + arg0 * 1000000000 + arg1 * 10 + arg2; }}
usdt:{lib}:hakmem:tiny_refill {{ @n[tid] = @n[tid] + 1; @ev[pid, tid, @n[tid]] = 2000000000000 + arg0 * 1000000000 + arg1 * 10 + arg2; }}
"""


def numbered_events(trace, pid, tid):
    """[(kind, class, blocks, code)] of thread tid of process pid, in order."""
    found = sorted((int(n), int(v)) for p, t, n, v in
                   re.findall(r"^@ev\[(\d+), (\d+), (\d+)\]: (\d+)$", trace, re.M) if int(p) == pid and int(t) == tid)
    assert [n for n, _ in found] == list(range(1, len(found) + 1)), "events missing from the trace"
    return [("spill" if v // 10**12 == 1 else "refill", v // 10**9 % 1000, v // 10 % 10**8, v % 10) for _, v in found]


@needs_root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("config,size", CACHE_CASES, ids=[f"{c}-{s}B" for c, s in CACHE_CASES])
def test_cache_capacity_rules(config, size):
    env, params = CACHE_CONFIGS[config]
    limit, cap, refill = params[size]
    count, rounds = 300, 3
    env = {**env, "HKTEST_SIZE": str(size), "HKTEST_COUNT": str(count), "HKTEST_ROUNDS": str(rounds)}
    proc, pid, trace = bpftrace_run(SPILL_PROGRAM, [build_program(PROGRAM), "spill"], env={**env, **EXACT},
                                    timeout=30)
    check_ok(proc)
    tid = int(re.search(r"^worker_tid=(\d+)$", proc.stdout, re.M).group(1))
    cls = classes_of(size)
    seen, sources = [], []
    for kind, c, n, code in numbered_events(trace, pid, tid):
        assert c == cls, f"the worker mallocs only {size}-byte blocks, yet an event names class {c}"
        if kind == "spill":
            seen.append(("spill", n, code))
        else:
            # sources: 0 partial, 1 fresh, 2 magazine (3 remote, 4 adopted: not here)
            assert code in (0, 1, 2), f"refill source {code} in a single-threaded run"
            seen.append(("refill", n, "magazine" if code == 2 else "slabs"))
            sources.append(code)
    refills = [n for kind, n, _ in seen if kind == "refill"]
    assert refills and max(refills) <= refill, f"refills of {refills}, configured at most {refill} ({env})"
    assert sources[0] == 1, "the thread's first refill must carve a fresh slab"
    expected = cache_model(limit, cap, refill, count, rounds)
    assert seen == expected, (f"{env}, {size} bytes (SLL limit {limit}, magazine {cap}, refill {refill}): "
                              f"events differ from the rules\nseen:     {seen}\nexpected: {expected}")


# ---- SuperSlab tiers ---------------------------------------------------------

TIER_CASES = {"default": (0.25, 0.50, {}),
              "half_three_quarters": (0.50, 0.75, {"HAKMEM_SS_TIER_DOWN_THRESHOLD": "0.5",
                                                   "HAKMEM_SS_TIER_UP_THRESHOLD": "0.75"})}


@needs_root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(TIER_CASES))
def test_superslab_tiers(case):
    down, up, env = TIER_CASES[case]
    # numbered per process (the program is single-threaded), in maps: see SPILL_PROGRAM
    program = """
usdt:{lib}:hakmem:ss_tier {{ @n[pid] = @n[pid] + 1; @ss[pid, @n[pid]] = arg0; @tier[pid, @n[pid]] = arg1 * 100000 + arg2 * 10000 + arg3; }}
"""
    proc, pid, trace = bpftrace_run(program, [build_program(PROGRAM), "tiering"], env=env, timeout=30)
    check_ok(proc)

    def numbered(name):
        return {int(n): int(v) for p, n, v in re.findall(rf"^@{name}\[(\d+), (\d+)\]: (\d+)$", trace, re.M)
                if int(p) == pid}

    ss_of, tier = numbered("ss"), numbered("tier")
    assert sorted(tier) == list(range(1, len(tier) + 1)) and sorted(ss_of) == sorted(tier), "events missing"
    events = [(ss_of[n], tier[n] // 100000, tier[n] // 10000 % 10, tier[n] % 10000) for n in sorted(tier)]
    down_events = [e for e in events if e[1:3] == (0, 1)]
    up_events = [e for e in events if e[1:3] == (1, 0)]
    assert down_events, f"no HOT->DRAINING transition after freeing ~90 % of the slabs\n{trace[-3000:]}"
    assert up_events, f"no DRAINING->HOT transition while refilling\n{trace[-3000:]}"
    assert len(down_events) + len(up_events) == len(events), f"unknown tier codes: {events}"
    for ss, _, _, util in down_events:
        assert util <= down * 1000, f"SuperSlab {ss:#x} turned DRAINING at {util} per mille (threshold {down})"
    for ss, _, _, util in up_events:
        assert util >= up * 1000, f"SuperSlab {ss:#x} turned HOT again at {util} per mille (threshold {up})"
    # each SuperSlab alternates, starting HOT
    state = {}
    for ss, old, new, util in events:
        assert state.get(ss, 0) == old, f"SuperSlab {ss:#x}: transition {old}->{new} from tier {state.get(ss, 0)}"
        state[ss] = new


# ---- memory returned -----------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("order", ["allocation", "random"])
def test_rss_after_live_set_drop(order):
    if order == "allocation":
        hakmem_only()  # glibc keeps it until malloc_trim
    run_subtest(PROGRAM, "rss_drop", env={"HKTEST_ORDER": order}, timeout=40)


@pytest.mark.parametrize("env", [
    {"HKTEST_MIN_SS": "0"},
    {"HAKMEM_TINY_SS_MIN_MB": "8", "HAKMEM_TINY_SS_RESERVE": "1", "HKTEST_MIN_SS": "4"},
], ids=["no-reservation", "min-8mb-reserved"])
def test_superslab_reservation(env):
    """HAKMEM_TINY_SS_MIN_MB with _RESERVE=1 maps the SuperSlabs at start-up
    and neither the release of empty ones nor malloc_trim unmaps them."""
    hakmem_only()
    run_subtest(PROGRAM, "ss_reserve", env=env, timeout=30)


@pytest.mark.parametrize("mode,decay_ms", [("now", "0"), ("later", "300")])
def test_free_slab_decay(mode, decay_ms):
    """HAKMEM_TINY_DECAY_MS: 0 purges a slab when it empties; otherwise it
    stays resident until it has been free that long, then a later slow path
    purges it."""
    hakmem_only()
    run_subtest(PROGRAM, "decay", env={"HKTEST_DECAY": mode, "HAKMEM_TINY_DECAY_MS": decay_ms}, timeout=30)


@pytest.mark.timeout(60)
def test_shrinking_class_gathers_survivors():
    """A class that loses 90 % of its blocks at random while it still
    allocates: sparse slabs gather the new blocks in the fullest slabs, so
    the others empty and their pages go back (resident estimate bounded in
    the C test; under glibc it only checks the contents)."""
    run_subtest(PROGRAM, "shrink", timeout=40)
