#!/usr/bin/env bash
# Runs the refactor-identity workloads with one rlvr binary into OUTDIR: the default run (one
# thread), the same under --nproc 2, rlvr eval and rlvr sample of it, a short rlvr sft, and a
# dataset run on the chat-template fixture model with rlvr sample of it.
# Usage: workloads.sh BINARY OUTDIR
set -u
BIN=$1; OUT=$2
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"
export OMP_NUM_THREADS=1
status=0
step() { local name=$1; shift; "$@" > "$name.log" 2>&1; local rc=$?; echo "$name: exit $rc"; [ $rc -eq 0 ] || status=1; }
step one "$BIN" train --name one --runs-dir runs --set train.threads=1
step two "$BIN" train --name two --runs-dir runs --nproc 2
step eval "$BIN" eval --run runs/one -n 8 --problems 30 --out ev
step sample "$BIN" sample --run runs/one --n 64
step sft "$BIN" sft --steps 40 --batch 16 --out sftm
step data "$BIN" train --name data --runs-dir runs --model "$REPO/crates/models/tests/fixtures/qwen2-tiny" \
  --data "$REPO/crates/rewards/tests/data/amc23_test.parquet" --steps 3 --set train.threads=1 \
  --set train.max_new_tokens=8 --set train.eval_problems=4 --set train.eval_samples=2 \
  --set train.prompts_per_step=2 --set train.samples_per_prompt=2 --set data.holdout=10
step sample-data "$BIN" sample --run runs/data --n 4
exit $status
