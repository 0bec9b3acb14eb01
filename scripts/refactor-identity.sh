#!/usr/bin/env bash
# Development check that a refactor changes no result: builds rlvr at REV (default: HEAD~1) in a
# separate worktree and target folder, runs the same workloads with it and with the working tree's
# build (scripts/refactor-identity/workloads.sh), and compares every non-timing metric of every
# step, the before/after evaluations, logged samples, final weights, rlvr eval's report, rlvr
# sample's output and rlvr sft's model, byte for byte (compare.py). Takes about 15 minutes on 2
# cores, most of it building REV.
# Usage: scripts/refactor-identity.sh [REV]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REV=${1:-HEAD~1}
WORK=${RLVR_IDENTITY_DIR:-/tmp/rlvr-identity}
scripts/libtorch.sh; scripts/protoc.sh; scripts/gloo.sh
mkdir -p "$WORK"
rm -rf "$WORK/base-tree"; git worktree prune
git worktree add -f --detach "$WORK/base-tree" "$REV" >/dev/null
ROOT=$(pwd)
( cd "$WORK/base-tree" && LIBTORCH="$ROOT/.libtorch" PROTOC="$ROOT/.tools/bin/protoc" \
    RLVR_GLOO_INCLUDE="$ROOT/.tools/gloo/include" CARGO_TARGET_DIR="$WORK/base-target" \
    cargo build -q -p rlvr-cli --bin rlvr )
cargo build -q -p rlvr-cli --bin rlvr
cp "$WORK/base-target/debug/rlvr" "$WORK/rlvr-base"; cp target/debug/rlvr "$WORK/rlvr-new"
scripts/refactor-identity/workloads.sh "$WORK/rlvr-base" "$WORK/base"
scripts/refactor-identity/workloads.sh "$WORK/rlvr-new" "$WORK/new"
git worktree remove --force "$WORK/base-tree"
python3 scripts/refactor-identity/compare.py "$WORK/base" "$WORK/new"
