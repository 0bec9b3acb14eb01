#!/usr/bin/env bash
# Builds target/bench/libmklvendor.so — rlvr's answer to MKL's vendor check
# (crates/kernels/shim/mkl_vendor.cpp, which every rlvr binary links) as a library to preload —
# and prints its path. The benchmarks' Python baselines (PyTorch, transformers, TRL, vLLM) run
# with it preloaded (scripts/bench/venv.sh's and vllm-venv.sh's python-mkl), so that they and
# rlvr run the same MKL code path; RLVR_MKL_VENDOR_CHECK=keep restores MKL's own answer in both.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$root/crates/kernels/shim/mkl_vendor.cpp"
lib="$root/target/bench/libmklvendor.so"
if [[ ! -f "$lib" || "$src" -nt "$lib" ]]; then
  mkdir -p "$(dirname "$lib")"
  c++ -shared -fPIC -O2 -o "$lib.tmp" "$src" -ldl
  mv "$lib.tmp" "$lib"
fi
echo "$lib"
