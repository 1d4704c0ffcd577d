#!/usr/bin/env bash
# The main job: install what is needed, build hakmem, run a real
# allocation-heavy program (Debian's python3.11 with PYTHONMALLOC=malloc,
# so every object goes through malloc) under hakmem with the tier-flow
# bpftrace program attached live, then print what each tier did.
#
# Without root or bpftrace the live tracing is skipped (with the reason)
# and only the library's own exit summary (HAKMEM_VERBOSE=1) is shown.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
make -s -j"$(nproc)" lib

lib="$PWD/build/libhakmem.so"
python=/usr/bin/python3.11
workload='
import json, random, sys
random.seed(1)
docs = []
for round in range(6):
    batch = [{"id": i, "name": "user%d" % i, "tags": [str(random.random()) for _ in range(5)],
              "blob": "x" * random.randint(10, 3000)} for i in range(40000)]
    text = json.dumps(batch)
    docs.append(json.loads(text)[: 2000])      # keep a little, drop the rest
    big = [bytearray(random.randint(40000, 3000000)) for _ in range(40)]
    del batch, text, big
print("workload done: kept %d documents" % sum(len(d) for d in docs), file=sys.stderr)
'

run_workload() {
  HAKMEM_VERBOSE=1 LD_PRELOAD="$lib" PYTHONMALLOC=malloc "$python" -c "$workload"
}

tracer_reason=""
if [ "$(id -u)" != 0 ]; then
  tracer_reason="not root"
elif ! command -v bpftrace >/dev/null; then
  tracer_reason="bpftrace is not installed"
fi

if [ -n "$tracer_reason" ]; then
  echo "== live tracing skipped: $tracer_reason; showing hakmem's own exit summary only =="
  run_workload
  exit 0
fi

mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
trace_out=$(mktemp)
trap 'rm -f "$trace_out"' EXIT
# System-wide on the library file: bpftrace 0.17 cannot attach to an
# LD_PRELOADed library with -c, but file activation also covers processes
# started after it attached.
program=$(sed "s|usdt:\*:|usdt:$lib:|" probes/tier_flow.bt)
bpftrace --usdt-file-activation -e "$program" >"$trace_out" 2>&1 &
tracer=$!
for _ in $(seq 1 100); do
  grep -q "tracing hakmem" "$trace_out" && break
  kill -0 "$tracer" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "tracing hakmem" "$trace_out"; then
  echo "== bpftrace did not attach; its output: ==" >&2
  cat "$trace_out" >&2
  kill "$tracer" 2>/dev/null || true
  run_workload
  exit 0
fi
echo "== python3.11 under hakmem, probes/tier_flow.bt attached (live, one block per second) =="
# bpftrace's harmless "couldn't set RLIMIT_MEMLOCK" line is filtered out.
tail -n +1 -f "$trace_out" | grep --line-buffered -v RLIMIT_MEMLOCK &
viewer=$!
run_workload
sleep 1.2
kill -INT "$tracer"
wait "$tracer" 2>/dev/null || true
sleep 0.5
kill "$viewer" 2>/dev/null || true
pkill -P $$ tail 2>/dev/null || true
wait 2>/dev/null || true
