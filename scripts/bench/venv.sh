#!/usr/bin/env bash
# The development-only Python of the side-by-side benchmarks: .tools/bench-venv with PyTorch
# 2.13 (the PyPI wheel, CUDA libraries included, ~3 GB), transformers and peft. Prints its python
# (python-mkl: MKL's vendor check answered as in rlvr).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.tools/bench-venv"
if [[ ! -f "$venv/.complete-peft" ]]; then
  echo "bench-venv: installing torch==2.13.0 transformers peft into $venv (once, ~3 GB)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  PIP_NO_CACHE_DIR=1 "$venv/bin/pip" install -q torch==2.13.0 transformers peft psutil >&2
  touch "$venv/.complete-peft"
fi
# Its python with MKL's vendor check answered as rlvr answers it (scripts/bench/mkl-vendor.sh).
"$root/scripts/bench/mkl-vendor.sh" "$venv/bin/python"
