#!/usr/bin/env bash
# Builds, on this (CPU) machine, the binaries scripts/gpu-check.sh runs on a lent GPU machine, against
# the PyTorch that machine has (its libtorch is used at run time), and packs them for the device tool:
#   scripts/gpu-build.sh [TORCH_VERSION]      (default 2.11.0: the GPU image's torch, 2.11.0+cu130)
# Writes .gpubin/bins.tar.xz (git-ignored through .git/info/exclude; carry `.gpubin`). On the device:
#   mkdir -p "$WORK" && ln -sfn "$PWD" "$WORK/ws" && mkdir -p /tmp/bin && tar -xJf .gpubin/bins.tar.xz -C /tmp/bin
#   GPU_BUDGET_S=420 timeout -k 10 540 scripts/gpu-check.sh /tmp/bin /tmp/g
# ($WORK is printed at the end: test binaries look for their fixtures under the build's path.)
# Steps: the torch wheel of that version from PyPI (its lib/ and include/ are the libtorch); a copy of
# torch-sys whose generated C++ functions that this libtorch lacks are replaced by ones that raise
# (tch 0.26 targets 2.13; 2.11 lacks 15 flash-attention/philox/lanczos ops rlvr never calls); a
# worktree of HEAD that patches torch-sys to that copy; a release build linked with
# --allow-shlib-undefined (the CUDA libraries libtorch_cuda.so needs exist only on the GPU machine).
# Needs about 8 GB of disk under WORK (default /work/gpu-build) and 30-40 minutes on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:-2.11.0}"
work="${WORK:-/work/gpu-build}"
mkdir -p "$work"
cd "$work"
if [[ ! -f libtorch/lib/libtorch_cpu.so ]]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d wheel "torch==$version"
  rm -rf unpacked && mkdir unpacked
  unzip -q wheel/torch-"$version"-*.whl 'torch/lib/*' 'torch/include/*' 'torch/share/*' -d unpacked
  rm -rf libtorch && mv unpacked/torch libtorch && rm -rf unpacked
fi
export LIBTORCH="$work/libtorch" LIBTORCH_BYPASS_VERSION_CHECK=1
export PROTOC="${PROTOC:-$root/.tools/bin/protoc}" RLVR_GLOO_INCLUDE="${RLVR_GLOO_INCLUDE:-$root/.tools/gloo/include}"
export CARGO_TARGET_DIR="$work/target" RUSTFLAGS="-C link-arg=-Wl,--allow-shlib-undefined"
tsys_version="$(sed -n 's/^torch-sys = "\(.*\)"/\1/p' "$root/Cargo.toml")"
if [[ ! -d torch-sys ]]; then
  cp -r "$(ls -d "$HOME"/.cargo/registry/src/*/torch-sys-"$tsys_version"* | head -1)" torch-sys
fi
rm -rf ws && git -C "$root" worktree prune && git -C "$root" worktree add -q --detach "$work/ws" HEAD
printf '\n[patch.crates-io]\ntorch-sys = { path = "%s/torch-sys" }\n' "$work" >> ws/Cargo.toml
cd ws
# Stub every generated function the compiler rejects, until torch-sys builds.
for _ in 1 2 3; do
  if cargo build -q --release -p torch-sys 2> "$work/torch-sys.log"; then break; fi
  python3 - "$work/torch-sys/libtch/torch_api_generated.cpp" "$work/torch-sys.log" <<'PY'
import re, sys
path, log = sys.argv[1:3]
bad = sorted({int(m) for m in re.findall(r"torch_api_generated\.cpp:(\d+):\d+: error", open(log).read())})
if not bad:
    sys.exit("gpu-build: torch-sys failed for another reason; see " + log)
lines = open(path).read().split("\n")
for b in bad:
    s = b - 1
    while not re.match(r"^[a-z].*\(.*\{\s*$", lines[s]):
        s -= 1
    e = s
    while lines[e] != "}":
        e += 1
    # Same line count, so the other error lines stay where the log says.
    lines[s + 1:e] = ['  PROTECT(throw std::runtime_error("not in this libtorch");)'] + [""] * (e - s - 2)
open(path, "w").write("\n".join(lines))
print(f"gpu-build: stubbed {len(bad)} generated functions this libtorch lacks")
PY
done
cargo build --release -p rlvr-cli --bin rlvr
cargo build --release -p rlvr-models --example rollout_bench
cargo bench -p rlvr-train --bench update_scale --no-run
cargo bench -p rlvr-algos --bench update_path --no-run
cargo test --release -p rlvr-models --test hf_reference --no-run
bins="$work/bins" && rm -rf "$bins" && mkdir -p "$bins"
cp "$CARGO_TARGET_DIR/release/rlvr" "$CARGO_TARGET_DIR/release/examples/rollout_bench" "$bins/"
for t in update_scale update_path hf_reference; do
  cp "$(ls -t "$CARGO_TARGET_DIR"/release/deps/"$t"-* | grep -v '\.d$' | head -1)" "$bins/$t"
done
strip "$bins"/*
mkdir -p "$root/.gpubin"
grep -qx '/.gpubin/' "$root/.git/info/exclude" 2>/dev/null || echo '/.gpubin/' >> "$root/.git/info/exclude"
tar -cJf "$root/.gpubin/bins.tar.xz" -C "$bins" .
ls -la "$root/.gpubin/bins.tar.xz"
echo "gpu-build: WORK=$work (on the device: ln -sfn \"\$PWD\" $work/ws)"
