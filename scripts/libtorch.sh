#!/usr/bin/env bash
# Lays out a CPU libtorch 2.13.0 (the version tch 0.26 needs) in <repo>/.libtorch from PyPI wheels.
#
# - A usable $LIBTORCH (a folder with lib/libtorch_cpu.so, e.g. your own CUDA build) wins: nothing
#   is fetched.
# - Re-running is a no-op once `.libtorch/.complete` exists.
# - Everything is fetched and unpacked into a staging folder that is renamed into place only when
#   complete, so an interrupted run is redone from scratch and never used half-written.
#
# Wheels: torch==2.13.0 (include/, lib/), nvidia-cuda-runtime==13.0.96 and
# nvidia-cuda-cupti==13.0.85 (libcudart.so.13 and libcupti.so.13, which libtorch_cpu.so links
# even on a CPU). The wheel's libtorch.so pulls libtorch_cuda.so, so an empty libtorch.so stands in.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.libtorch"
stamp="torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85"

if [[ -n "${LIBTORCH:-}" ]]; then
  if [[ -f "$LIBTORCH/lib/libtorch_cpu.so" ]]; then
    echo "libtorch: using LIBTORCH=$LIBTORCH" >&2
    exit 0
  fi
  echo "libtorch: LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so; unset it or point it at a libtorch 2.13 folder" >&2
  exit 1
fi

if [[ -f "$dest/.complete" ]] && [[ "$(cat "$dest/.complete")" == "$stamp" ]]; then
  exit 0
fi

# shellcheck source=scripts/bootstrap-common.sh
source "$root/scripts/bootstrap-common.sh"
python="$(find_python libtorch libtorch)"

stage="$root/.libtorch.partial"
rm -rf "$stage"
mkdir -p "$stage/wheels"
echo "libtorch: fetching $stamp from PyPI (about 540 MB, once)" >&2
# shellcheck disable=SC2086
"$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$stage/wheels" $stamp

"$python" - "$stage" <<'PY'
import pathlib, shutil, sys, zipfile
stage = pathlib.Path(sys.argv[1])
out = stage / "libtorch"
(out / "lib").mkdir(parents=True)
# CUDA-side libraries of the torch wheel: left out so that tch links the CPU build.
skip = ("libtorch_cuda", "libc10_cuda", "libcaffe2_nvrtc", "libtorch_nvshmem", "libtorch_python", "libtorch.so")
for wheel in sorted((stage / "wheels").glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        bad = z.testzip()
        if bad is not None:
            sys.exit(f"libtorch: {wheel.name} is corrupt at {bad}")
        for info in z.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if name.startswith("torch/include/") or name.startswith("torch/share/"):
                target = out / name[len("torch/"):]
            elif name.startswith("torch/lib/") and name.count("/") == 2:
                base = name.rsplit("/", 1)[1]
                if base.startswith(skip):
                    continue
                target = out / "lib" / base
            elif name.startswith("nvidia/") and "/lib/" in name and ".so" in name:
                target = out / "lib" / name.rsplit("/", 1)[1]
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
PY

# Stand-in libtorch.so: tch always links -ltorch; the CPU symbols live in libtorch_cpu.so.
cc="$(command -v cc || command -v gcc)"
echo "" | "$cc" -x c -shared -o "$stage/libtorch/lib/libtorch.so" -
test -f "$stage/libtorch/lib/libtorch_cpu.so"

echo "$stamp" > "$stage/libtorch/.complete"
rm -rf "$dest"
mv "$stage/libtorch" "$dest"
rm -rf "$stage"
echo "libtorch: ready in $dest" >&2
