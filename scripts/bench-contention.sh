#!/usr/bin/env bash
# The default run's wall time alone and with two competing busy processes (shell loops), each
# REPEAT times (default 3), medians and their ratio (docs/performance.md, "CPU threads").
#   scripts/bench-contention.sh [REPEAT]
# Uses target/release/rlvr (built if missing); run folders go to a temporary directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
repeat=${1:-3}
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
[[ -x target/release/rlvr ]] || cargo build --release -p rlvr-cli
export LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
run() { # prints seconds
  python3 -c 'import subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(f"{time.perf_counter() - t:.2f}")' target/release/rlvr train --runs-dir "$tmp/runs"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
alone=$(for _ in $(seq "$repeat"); do run; done | tee /dev/stderr | median)
sh -c 'while :; do :; done' & sh -c 'while :; do :; done' &
sleep 1
busy=$(for _ in $(seq "$repeat"); do run; done | tee /dev/stderr | median)
kill $(jobs -p) 2>/dev/null || true
echo "default run: alone ${alone} s, with two busy processes ${busy} s (medians of $repeat), ratio $(python3 -c "print(f'{$busy / $alone:.2f}')")"
