#!/usr/bin/env bash
# Builds target/bench/libmklvendor.so — rlvr's answer to MKL's vendor check
# (crates/kernels/shim/mkl_vendor.cpp, which every rlvr binary links) as a library to preload.
# Given PYTHON, writes PYTHON-mkl beside it (that python with the library preloaded) and prints
# its path; else prints the library's. The benchmarks' Python baselines (PyTorch, transformers,
# TRL, vLLM) run through python-mkl (scripts/bench/venv.sh, vllm-venv.sh), so that they and rlvr
# run the same MKL code path; RLVR_MKL_VENDOR_CHECK=keep restores MKL's own answer in both.
#   scripts/bench/mkl-vendor.sh [PYTHON]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$root/crates/kernels/shim/mkl_vendor.cpp"
lib="$root/target/bench/libmklvendor.so"
if [[ ! -f "$lib" || "$src" -nt "$lib" ]]; then
  mkdir -p "$(dirname "$lib")"
  c++ -shared -fPIC -O2 -o "$lib.tmp" "$src" -ldl
  mv "$lib.tmp" "$lib"
fi
if [[ $# -eq 0 ]]; then
  echo "$lib"
  exit 0
fi
python=$1
cat > "$python-mkl.tmp" <<SH
#!/bin/sh
LD_PRELOAD="$lib\${LD_PRELOAD:+:\$LD_PRELOAD}" exec "$python" "\$@"
SH
chmod +x "$python-mkl.tmp"
mv "$python-mkl.tmp" "$python-mkl"
echo "$python-mkl"
