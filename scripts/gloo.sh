#!/usr/bin/env bash
# Lays out gloo's C++ headers in <repo>/.tools/gloo/include (ignored by git). rlvr-dist's C++ shim
# over libtorch's c10d includes ProcessGroupGloo.hpp, which includes gloo headers that libtorch does
# not ship; the gloo code itself is inside libtorch_cpu.so. The headers come from Debian's
# libgloo-dev package (fetched as a file; nothing is installed), and .cargo/config.toml points
# RLVR_GLOO_INCLUDE here (an environment value wins).
#
# - Re-running is a no-op once `.tools/gloo/.complete` holds this package's version.
# - The package is checked against its SHA-256 and unpacked into a staging folder that is renamed
#   into place only when complete.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/gloo"
version="0.0~git20220518.5b14351-3"
file="libgloo-dev_${version}_amd64.deb"
sha256="80529c9fd8af452faf489e686b94bf87075965c40673803810c4f41634b1e299"
urls=(
  "https://deb.debian.org/debian/pool/main/g/gloo/$file"
  "http://deb.debian.org/debian/pool/main/g/gloo/$file"
  "https://snapshot.debian.org/archive/debian/20230612T000000Z/pool/main/g/gloo/$file"
)

if [[ -f "$dest/.complete" ]] && [[ "$(cat "$dest/.complete")" == "$version" ]]; then
  exit 0
fi

# shellcheck source=scripts/bootstrap-common.sh
source "$root/scripts/bootstrap-common.sh"
python="$(find_python gloo "Debian's libgloo-dev headers")"
stage="$root/.tools/gloo.partial"
rm -rf "$stage"
mkdir -p "$stage"
echo "gloo: fetching Debian's $file (about 50 kB, once)" >&2
"$python" - "$stage" "$sha256" "$file" "${urls[@]}" <<'PY'
import hashlib, io, lzma, pathlib, sys, tarfile, urllib.request
stage, sha, name, urls = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
data, errors = None, []
for url in urls:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            data = r.read()
        break
    except Exception as e:  # try the next mirror
        errors.append(f"{url}: {e}")
if data is None:
    sys.exit("gloo: could not fetch " + name + ":\n  " + "\n  ".join(errors))
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit(f"gloo: {name} does not match its SHA-256 {sha}")
# A .deb is an `ar` archive; the files are in data.tar.*.
if not data.startswith(b"!<arch>\n"):
    sys.exit(f"gloo: {name} is not a Debian package")
pos, members = 8, {}
while pos + 60 <= len(data):
    header = data[pos:pos + 60]
    member = header[:16].decode().strip().rstrip("/")
    size = int(header[48:58].decode().strip())
    members[member] = data[pos + 60:pos + 60 + size]
    pos += 60 + size + (size % 2)
tar_name = next((m for m in members if m.startswith("data.tar")), None)
if tar_name is None:
    sys.exit(f"gloo: {name} has no data.tar")
with tarfile.open(fileobj=io.BytesIO(members[tar_name])) as tar:
    for info in tar.getmembers():
        path = info.name.lstrip("./")
        if info.isfile() and path.startswith("usr/include/gloo/"):
            target = stage / "include" / path[len("usr/include/"):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(info).read())
PY
test -f "$stage/include/gloo/algorithm.h"
echo "$version" > "$stage/.complete"
rm -rf "$dest"
mv "$stage" "$dest"
