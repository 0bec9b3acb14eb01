# Sourced by the benchmark scripts, from the repository root: bench_setup OUT empties the output
# folder OUT, fetches libtorch, protoc and the gloo headers if missing (the README's bootstrap),
# and puts libtorch on the library path.
bench_setup() {
  rm -rf "$1"
  mkdir -p "$1"
  scripts/libtorch.sh
  scripts/protoc.sh
  scripts/gloo.sh
  export LD_LIBRARY_PATH="$PWD/.libtorch/lib:${LD_LIBRARY_PATH:-}"
}
