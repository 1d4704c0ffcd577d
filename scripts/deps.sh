#!/usr/bin/env bash
# Install every Debian package hakmem's build, tests, benchmarks and tools
# need. Idempotent: when everything is present it only asks dpkg (well under
# a second). Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  build-essential g++ clang llvm libclang-rt-14-dev clang-format make pkg-config binutils procps
  systemtap-sdt-dev bpftrace libbpf-dev bpftool libelf-dev zlib1g-dev
  linux-perf bpfcc-tools valgrind
  python3 python3-pytest python3-pytest-timeout python3-pytest-xdist
  libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4
  gnuplot-nox sqlite3 git
)

missing=()
for pkg in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps.sh: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps.sh: done" >&2
