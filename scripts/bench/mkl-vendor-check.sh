#!/usr/bin/env bash
# Measures what MKL's vendor check costs on this CPU: libtorch's CPU matrix products go to the
# MKL it links statically, which takes its generic code path on non-Intel processors even where
# they have AVX-512. rlvr's binaries answer the check themselves (crates/kernels/shim/
# mkl_vendor.cpp); RLVR_MKL_VENDOR_CHECK=keep restores MKL's own answer. Runs rlvr's rollout
# benchmark (39M shape, 32 × 8 × ≤ 256) alternately with MKL's answer and rlvr's, twice each,
# and prints the code path MKL took in each (0 generic, 5 AVX2, 7 AVX-512).
#   scripts/bench/mkl-vendor-check.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out=target/mkl-vendor-check
mkdir -p "$out"
export LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
cargo build -q --release -p rlvr-models --example rollout_bench
grep -m1 "model name" /proc/cpuinfo
for run in 1 2; do
  for mode in keep answered; do
    RLVR_MKL_VENDOR_CHECK=$mode target/release/examples/rollout_bench scripts/bench/qwen2-39m.json "$out" 32 8 256 \
      2>/dev/null | tail -1 | python3 -c "import json, sys; d = json.load(sys.stdin); print(f\"$mode: {d['tokens_per_s']:.1f} tokens/s, {d['generated_tokens']:.0f} tokens, MKL path {d.get('mkl_code_path')}\")"
  done
done
