#!/usr/bin/env bash
# Builds librlvr_nccl.so, the NCCL build of rlvr-dist's c10d shim (crates/dist/shim/c10d.cpp with
# -DRLVR_NCCL), on a CUDA machine against the CUDA libtorch rlvr runs with. rlvr loads it at run
# time when RLVR_DIST_BACKEND=nccl (RLVR_NCCL_SHIM names it; default: next to the rlvr binary).
#   scripts/build-nccl-shim.sh OUT_DIR
# libtorch: $LIBTORCH if set, else the python3 torch package's folder. CUDA headers: $CUDA_HOME
# (default /usr/local/cuda); NCCL headers: the nvidia-nccl pip package, else $NCCL_HOME/include.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:?usage: scripts/build-nccl-shim.sh OUT_DIR}"
mkdir -p "$out"
if [[ -n "${LIBTORCH:-}" ]]; then
  torch="$LIBTORCH"
  abi="${LIBTORCH_CXX11_ABI:-1}"
else
  torch="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
  abi="$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
fi
cuda="${CUDA_HOME:-/usr/local/cuda}"
if [[ ! -f "$cuda/include/cuda_runtime_api.h" ]] && command -v nvcc >/dev/null; then
  cuda="$(dirname "$(dirname "$(command -v nvcc)")")"
fi
# Header folders of the pip CUDA packages (nvidia/nccl/include, nvidia/cublas/include, ...).
mapfile -t pip_includes < <(python3 -c '
import os
try:
    import nvidia
    for p in nvidia.__path__:
        for d in sorted(os.listdir(p)):
            inc = os.path.join(p, d, "include")
            if os.path.isdir(inc):
                print(inc)
except ImportError:
    pass' 2>/dev/null)
includes=(-I"$torch/include" -I"$torch/include/torch/csrc/api/include" -I"$cuda/include")
[[ -n "${NCCL_HOME:-}" ]] && includes+=(-I"$NCCL_HOME/include")
for inc in "${pip_includes[@]}"; do includes+=(-I"$inc"); done
found_nccl=no
for flag in "${includes[@]}"; do [[ -f "${flag#-I}/nccl.h" ]] && found_nccl=yes; done
[[ -f /usr/include/nccl.h ]] && found_nccl=yes
for h in "$torch/include/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp" "$cuda/include/cuda_runtime_api.h"; do
  [[ -f "$h" ]] || { echo "build-nccl-shim: $h not found" >&2; exit 1; }
done
[[ "$found_nccl" == yes ]] || { echo "build-nccl-shim: nccl.h not found (set NCCL_HOME)" >&2; exit 1; }
"${CXX:-g++}" -std=c++17 -O2 -fPIC -shared -w -DRLVR_NCCL -D_GLIBCXX_USE_CXX11_ABI="$abi" \
  "${includes[@]}" \
  "$root/crates/dist/shim/c10d.cpp" \
  -L"$torch/lib" -Wl,-rpath,"$torch/lib" -ltorch_cuda -ltorch_cpu -lc10_cuda -lc10 \
  -o "$out/librlvr_nccl.so"
echo "build-nccl-shim: $out/librlvr_nccl.so"
