"""Configuration: every HAKMEM_* variable comes from one table; bad values,
unknown names, removed and build-time names each get one clear stderr line,
the default is used, and nothing can crash the process."""
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, LIB, ROOT

CONFIG_TOOL = BUILD / "hakmem-config"
SEED = ROOT.parent / "shared" / "seed" / "000_a8d1e64d0a8dd0c6.txt"


def effective_config(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAKMEM_")}
    env.update(env_extra)
    out = subprocess.run([str(CONFIG_TOOL)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    values = {}
    for line in out.stdout.splitlines():
        name, rest = line.split("=", 1)
        value, source = re.match(r"(.*?)  \((\w+);", rest).groups()
        values[name] = (value, source)
    return values, out.stderr


def stderr_of(env_extra, argv=("/bin/true",), cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAKMEM_")}
    env.update(env_extra)
    env["LD_PRELOAD"] = str(LIB)
    out = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=30, cwd=cwd)
    assert out.returncode == 0, f"{argv} failed under {env_extra}: {out.stderr}"
    return out.stderr


BAD_VALUES = [
    # variable, bad value, words the message must contain, default kept
    ("HAKMEM_SLL_MULTIPLIER", "abc", "an integer in [1, 16]", "2"),
    ("HAKMEM_SLL_MULTIPLIER", "17", "an integer in [1, 16]", "2"),
    ("HAKMEM_SLL_MULTIPLIER", "-1", "an integer in [1, 16]", "2"),
    ("HAKMEM_TINY_REFILL_MAX", "12x", "an integer in [1, 4096]", "64"),
    ("HAKMEM_TINY_REFILL_MAX", "99999999999999999999999", "an integer", "64"),
    ("HAKMEM_WRAP_TINY", "maybe", "0 or 1", "1"),
    ("HAKMEM_THP", "sometimes", "one of off|auto|on", "auto"),
    ("HAKMEM_TINY_PROFILE", "fastest", "one of conservative|hot|off|full", "conservative"),
    ("HAKMEM_SS_TIER_DOWN_THRESHOLD", "1.5", "a number in [0, 1]", "0.25"),
    ("HAKMEM_SS_TIER_UP_THRESHOLD", "nan", "a number in [0, 1]", "0.5"),
    ("HAKMEM_WMAX_MID", "12Q", "a size in bytes", str(256 * 1024)),
    ("HAKMEM_WMAX_MID", "", "a size in bytes", str(256 * 1024)),
    ("HAKMEM_L25_DZ", "64,,256", "comma-separated integers", "64,256"),
    ("HAKMEM_L25_DZ", "64,9999999", "comma-separated integers", "64,256"),
    ("HAKMEM_MODE", "turbo", "one of minimal|fast|balanced|learning|research", "balanced"),
    ("HAKMEM_VERBOSE", "9", "an integer in [0, 3]", "0"),
]


@pytest.mark.parametrize("name,value,expected,default", BAD_VALUES)
def test_bad_value_is_rejected_with_one_clear_line(name, value, expected, default):
    err = stderr_of({name: value})
    lines = [l for l in err.splitlines() if l.startswith("hakmem:")]
    assert len(lines) == 1, err
    assert name in lines[0] and f'"{value}"' in lines[0], lines[0]
    assert expected in lines[0], lines[0]
    values, _ = effective_config({name: value, "HAKMEM_QUIET": "1"})
    assert values[name][0] == default
    assert values[name][1] == "default"


def test_good_values_take_effect():
    values, err = effective_config(
        {"HAKMEM_SLL_MULTIPLIER": "4", "HAKMEM_WMAX_MID": "1M", "HAKMEM_THP": "OFF",
         "HAKMEM_L25_DZ": "32,128,512", "HAKMEM_WRAP_TINY": "off", "HAKMEM_SS_TIER_DOWN_THRESHOLD": "0.1"})
    assert err == ""
    assert values["HAKMEM_SLL_MULTIPLIER"] == ("4", "env")
    assert values["HAKMEM_WMAX_MID"] == (str(1 << 20), "env")
    assert values["HAKMEM_THP"] == ("off", "env")
    assert values["HAKMEM_L25_DZ"] == ("32,128,512", "env")
    assert values["HAKMEM_WRAP_TINY"] == ("0", "env")
    assert values["HAKMEM_SS_TIER_DOWN_THRESHOLD"] == ("0.1", "env")


def test_unknown_name_gets_did_you_mean():
    err = stderr_of({"HAKMEM_TINY_MAGCAP": "5"})
    assert "unknown variable HAKMEM_TINY_MAGCAP" in err
    assert "did you mean HAKMEM_TINY_MAG_CAP?" in err


def test_unknown_name_far_from_everything_gets_no_guess():
    err = stderr_of({"HAKMEM_ZZZZZZZZZZZZZZZZZZZZZZ": "1"})
    assert "unknown variable HAKMEM_ZZZZZZZZZZZZZZZZZZZZZZ" in err
    assert "did you mean" not in err


def test_removed_hotmag_variables_warn():
    for name in ["HAKMEM_TINY_HOTMAG", "HAKMEM_TINY_HOTMAG_CAP", "HAKMEM_TINY_HOTMAG_C3"]:
        err = stderr_of({name: "1"})
        assert f"{name} is removed and ignored" in err, err


def test_build_time_flag_in_environment_is_explained():
    err = stderr_of({"HAKMEM_ENABLE_STATS": "1"})
    assert "HAKMEM_ENABLE_STATS is a build-time switch" in err
    assert "make STATS=1" in err


def test_inconsistent_tier_thresholds_fall_back_to_defaults():
    env = {"HAKMEM_SS_TIER_DOWN_THRESHOLD": "0.8", "HAKMEM_SS_TIER_UP_THRESHOLD": "0.3"}
    err = stderr_of(env)
    assert "must be below HAKMEM_SS_TIER_UP_THRESHOLD" in err
    values, _ = effective_config({**env, "HAKMEM_QUIET": "1"})
    assert values["HAKMEM_SS_TIER_DOWN_THRESHOLD"][0] == "0.25"
    assert values["HAKMEM_SS_TIER_UP_THRESHOLD"][0] == "0.5"


def test_quiet_silences_every_warning():
    err = stderr_of({"HAKMEM_QUIET": "1", "HAKMEM_SLL_MULTIPLIER": "abc", "HAKMEM_FOO": "1",
                     "HAKMEM_TINY_HOTMAG": "1", "HAKMEM_VERBOSE": "1"})
    assert err == ""


def test_log_file_receives_messages(tmp_path):
    log = tmp_path / "hakmem.log"
    err = stderr_of({"HAKMEM_LOG_FILE": str(log), "HAKMEM_VERBOSE": "1", "HAKMEM_THP": "bogus"})
    text = log.read_text()
    assert "loaded in pid" in text and "summary pid" in text
    # The rejection happens before the log file is known: it stays on stderr.
    assert "HAKMEM_THP" in err


def test_unwritable_log_file_falls_back_to_stderr():
    err = stderr_of({"HAKMEM_LOG_FILE": "/nonexistent-dir/x.log", "HAKMEM_VERBOSE": "1"})
    assert "cannot be opened" in err and "summary pid" in err


@pytest.mark.parametrize("value", ["x" * 5000, "\u00e9\u00e8", " 12", "0x10", "1e3", "9" * 400])
def test_hostile_values_never_crash(value, tmp_path):
    # HAKMEM_LOG_FILE gets these values too: the files land in tmp_path.
    for name in ["HAKMEM_SLL_MULTIPLIER", "HAKMEM_WMAX_MID", "HAKMEM_THP", "HAKMEM_L25_DZ",
                 "HAKMEM_LOG_FILE", "HAKMEM_TARGET_HIT_MID", "HAKMEM_PRESET"]:
        stderr_of({name: value, "HAKMEM_QUIET": "1"}, cwd=tmp_path)


def test_modes_preset_unset_variables_only():
    values, _ = effective_config({"HAKMEM_MODE": "minimal"})
    assert values["HAKMEM_BIGCACHE_MAX_MB"] == ("0", "mode")
    assert values["HAKMEM_TINY_MAG_CAP"] == ("16", "mode")
    values, _ = effective_config({"HAKMEM_MODE": "minimal", "HAKMEM_BIGCACHE_MAX_MB": "5"})
    assert values["HAKMEM_BIGCACHE_MAX_MB"] == ("5", "env")
    values, _ = effective_config({"HAKMEM_MODE": "research"})
    assert values["HAKMEM_LEARN"] == ("1", "mode") and values["HAKMEM_VERBOSE"] == ("1", "mode")
    values, _ = effective_config({"HAKMEM_TINY_MEM_DIET": "1"})
    assert values["HAKMEM_BIGCACHE_MAX_MB"] == ("8", "mode")


@pytest.mark.parametrize("mode", ["minimal", "fast", "balanced", "learning", "research"])
def test_every_mode_runs_a_real_program(mode):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAKMEM_")}
    env.update({"HAKMEM_MODE": mode, "HAKMEM_QUIET": "1", "LD_PRELOAD": str(LIB)})
    out = subprocess.run(["sort", "-n"], input="\n".join(str(i) for i in range(20000, 0, -1)),
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.split()[:3] == ["1", "2", "3"]


def test_config_reference_matches_the_table():
    generated = subprocess.run([str(CONFIG_TOOL), "--markdown"], capture_output=True, text=True,
                               env={"PATH": os.environ.get("PATH", "")}, timeout=30).stdout
    committed = (ROOT / "docs" / "CONFIG.md").read_text()
    assert committed == generated, "docs/CONFIG.md is stale: run `make docs`"


def table_names():
    text = subprocess.run([str(CONFIG_TOOL), "--markdown"], capture_output=True, text=True,
                          timeout=30).stdout
    return set(re.findall(r"^\| `(HAKMEM_[A-Z0-9_]+)`", text, re.M))


@pytest.mark.skipif(not SEED.exists(), reason="the seed reference (../shared/seed) is not beside this checkout")
def test_every_seed_variable_is_in_the_table():
    seed = SEED.read_text()
    names = set()
    for name in re.findall(r"HAKMEM_[A-Z0-9_]+(?:\{0\.\.7\})?", seed):
        if name.endswith("{0..7}"):
            base = name[: -len("{0..7}")]
            names.update(f"{base}{i}" for i in range(8))
        else:
            names.add(name)
    build_flags = {"HAKMEM_ENABLE_STATS", "HAKMEM_BUILD_RELEASE", "HAKMEM_BUILD_DEBUG",
                   "HAKMEM_DEBUG_COUNTERS", "HAKMEM_USDT", "HAKMEM_TINY_MINIMAL_FRONT",
                   "HAKMEM_TINY_BENCH_FASTPATH", "HAKMEM_TINY_BENCH_SLL_ONLY", "HAKMEM_TINY_STAT_SAMPLING"}
    # The seed names the hot refill override {0..7} but says it applies to classes 0-3 only.
    hot_only = {f"HAKMEM_TINY_REFILL_MAX_HOT_C{i}" for i in range(4, 8)}
    missing = sorted(names - table_names() - build_flags - hot_only
                     - {"HAKMEM_ACE_", "HAKMEM_INT_", "HAKMEM_TINY_MAG_CAP_C", "HAKMEM_TINY_REFILL_MAX_C",
                        "HAKMEM_TINY_REFILL_MAX_HOT_C", "HAKMEM_TINY_CAP_FLOOR_C", "HAKMEM_TINY_HOTMAG_C"})
    assert not missing, f"seed variables missing from the table: {missing}"
