#!/usr/bin/env bash
# The test command: fetches libtorch, protoc and gloo's headers if needed (scripts/libtorch.sh,
# protoc.sh, gloo.sh), then runs the workspace tests.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p rlvr-algos`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
cargo test --workspace "$@"
