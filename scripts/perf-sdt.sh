#!/usr/bin/env bash
# Record hakmem's USDT probes with perf, for a command or a running process,
# and print the events (perf script) and a count per probe.
#
#   scripts/perf-sdt.sh [-e PROBE[,PROBE...]] [-o perf.data] -- CMD [ARGS...]
#   scripts/perf-sdt.sh [-e PROBE[,PROBE...]] [-o perf.data] -p PID [-d SECONDS]
#
# PROBE is a name from TRACING.md (ss_map, tiny_refill, ...); the default
# is every probe. CMD runs with LD_PRELOAD set to the library. Needs root
# (perf probe writes uprobe events into tracefs, which it mounts if it is
# missing). The probe definitions are removed again on exit.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
lib="${HAKMEM_LIB:-$here/build/libhakmem.so}"
events=""
out="perf.data.hakmem"
pid=""
duration=10

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    -e) events="$2"; shift 2 ;;
    -o) out="$2"; shift 2 ;;
    -p) pid="$2"; shift 2 ;;
    -d) duration="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "perf-sdt.sh: unknown option $1" >&2; usage ;;
  esac
done
if [ -z "$pid" ] && [ $# -eq 0 ]; then
  echo "perf-sdt.sh: give a command after -- or a process with -p PID" >&2
  usage
fi
if [ "$(id -u)" != 0 ]; then
  echo "perf-sdt.sh: needs root (perf probe adds uprobe events)" >&2
  exit 1
fi
[ -f "$lib" ] || { echo "perf-sdt.sh: $lib not found (run make)" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf-sdt.sh: perf not found (scripts/deps.sh installs linux-perf)" >&2; exit 1; }
if [ -n "$pid" ]; then
  kill -0 "$pid" 2>/dev/null || { echo "perf-sdt.sh: no process $pid" >&2; exit 1; }
  if ! grep -q "$(basename "$lib")" "/proc/$pid/maps" 2>/dev/null; then
    echo "perf-sdt.sh: process $pid does not use hakmem ($(basename "$lib") is not mapped)" >&2
    exit 1
  fi
  lib="$(grep -m1 -o "/[^ ]*$(basename "$lib")" "/proc/$pid/maps")"
fi

# perf keeps its build-id cache under $HOME/.debug.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true

# perf finds SDT notes through its build-id cache.
perf buildid-cache --add "$lib" 2>/dev/null || true
# Remove on exit exactly the sdt_hakmem events this run defined.
before="$(perf probe -l 2>/dev/null | awk '/sdt_hakmem:/ {print $1}' | sort -u)"
cleanup() {
  local now
  now="$(perf probe -l 2>/dev/null | awk '/sdt_hakmem:/ {print $1}' | sort -u)"
  comm -13 <(echo "$before") <(echo "$now") | while read -r e; do
    [ -n "$e" ] && perf probe -q -d "$e" 2>/dev/null || true
  done
}
trap cleanup EXIT

if [ -z "$events" ]; then
  events="$(readelf -n --wide "$lib" | awk '/Provider: hakmem/ {getline; sub(/.*Name: /, ""); print}' | sort -u |
    paste -sd, -)"
  # readelf prints "Provider: P" and "Name: N" on one line in --wide mode.
  [ -n "$events" ] || events="$(readelf -n --wide "$lib" | sed -n 's/.*Provider: hakmem *Name: \([a-z0-9_]*\).*/\1/p' |
    sort -u | paste -sd, -)"
fi
record_args=()
IFS=',' read -r -a names <<<"$events"
for name in "${names[@]}"; do
  # A probe with several call sites gets one event per site; perf may
  # report an error for the later sites while defining them all.
  perf probe -q -x "$lib" -a "sdt_hakmem:$name" 2>/dev/null || true
  if ! perf probe -l 2>/dev/null | grep -q "sdt_hakmem:$name "; then
    echo "perf-sdt.sh: could not define sdt_hakmem:$name from $lib" >&2
    exit 1
  fi
  record_args+=(-e "sdt_hakmem:$name")
done

status=0
if [ -n "$pid" ]; then
  perf record -q -o "$out" "${record_args[@]}" -p "$pid" -- sleep "$duration" || status=$?
else
  perf record -q -o "$out" "${record_args[@]}" -- env LD_PRELOAD="$lib" "$@" || status=$?
fi

echo "== perf script (first 20 events) ==" >&2
perf script -i "$out" 2>/dev/null | head -20 >&2 || true
echo "== events per probe ==" >&2
perf script -i "$out" -F event 2>/dev/null | sed 's/^ *//; s/: *$//' | sort | uniq -c | sort -rn
exit "$status"
