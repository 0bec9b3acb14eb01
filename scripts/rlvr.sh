#!/usr/bin/env bash
# Runs the `rlvr` binary (release build), fetching libtorch first if needed.
# Usage: scripts/rlvr.sh list | scripts/rlvr.sh config --algo simko --topk 3 --tau 0.1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
cargo run --release --quiet -p rlvr-cli --bin rlvr -- "$@"
