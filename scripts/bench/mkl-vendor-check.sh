#!/usr/bin/env bash
# Measures what MKL's vendor check costs on this CPU: libtorch's CPU matrix products go to the
# MKL it links statically, which takes its generic code path on non-Intel processors even where
# they have AVX-512. A preloaded `mkl_serv_intel_cpu_true` returning 1 (MKL's exported vendor
# check; libtorch_cpu.so exports it, so it can be interposed) makes MKL dispatch by the CPU's
# features. Runs rlvr's rollout benchmark (39M shape, 32 × 8 × ≤ 256) alternately without and
# with it, twice each. Development only: rlvr does not do this (yet); see docs/performance.md.
#   scripts/bench/mkl-vendor-check.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out=target/mkl-vendor-check
mkdir -p "$out"
printf 'int mkl_serv_intel_cpu_true(void) { return 1; }\n' > "$out/vendor.c"
cc -shared -fPIC -o "$out/libmklvendor.so" "$out/vendor.c"
export LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
cargo build -q --release -p rlvr-models --example rollout_bench
grep -m1 "model name" /proc/cpuinfo
for run in 1 2; do
  for mode in stock preloaded; do
    preload=""
    [[ $mode == preloaded ]] && preload="$out/libmklvendor.so"
    LD_PRELOAD="$preload" target/release/examples/rollout_bench scripts/bench/qwen2-39m.json "$out" 32 8 256 \
      2>/dev/null | tail -1 | python3 -c "import json, sys; d = json.load(sys.stdin); print(f\"$mode: {d['tokens_per_s']:.1f} tokens/s, {d['generated_tokens']:.0f} tokens\")"
  done
done
