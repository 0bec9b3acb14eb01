#!/usr/bin/env bash
# Every benchmark with a table in the docs, from one command; each writes docs/bench/<name>.json
# (commit, machine, threads, raw figures: scripts/bench/record.py) and the tables of
# docs/performance.md and the README are regenerated from those files (`bench-tables`; the
# `bench_tables` test fails when a table disagrees with its JSON).
#   scripts/bench.sh [--quick] [update] [rollout] [rollout-0.5b] [grpo] [update-path]
# Without names: all. --quick runs each on small sizes into target/bench/quick/ and prints the
# tables, leaving docs/ alone (a check that the benchmarks run; minutes instead of ~40).
# The scripts it calls rebuild their binaries from this checkout (cargo, release profile) and
# install the Python baselines' venv (scripts/bench/venv.sh) on first use.
#   update   scripts/bench-update.sh: one update of the Qwen2.5-0.5B shape at 2 × 512 … 4096
#            response tokens, rlvr vs the strong (eager and compiled) and the plain PyTorch +
#            transformers update
#   rollout  scripts/bench-rollout.sh: 32 prompts × 8 samples × ≤ 256 tokens on the 39M Qwen2
#            shape, rlvr vs transformers' generate (dynamic and static cache) and vLLM's CPU
#            build (eager and compiled)
#   rollout-0.5b  the same at the Qwen2.5-0.5B shape, 8 prompts × 8 samples × ≤ 128 tokens
#   grpo     scripts/bench-grpo.sh: a whole GRPO step at the Qwen2.5-0.5B shape, rlvr vs TRL's
#            GRPOTrainer with and without gradient checkpointing on the same work (5 steps
#            each; --quick: 2)
#   update-path  scripts/bench-update-path.sh: the update step from logits (statistics, loss,
#            gradient), SimKO vs GRPO, 4 alternating runs at 16 × 1024 and 4 × 1024 tokens of a
#            32768 vocabulary (--quick: one run at 4 × 256)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quick=0
names=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    update|rollout|rollout-0.5b|grpo|update-path) names+=("$a") ;;
    *) echo "scripts/bench.sh: unknown argument '$a' (valid: --quick, update, rollout, rollout-0.5b, grpo, update-path)" >&2; exit 2 ;;
  esac
done
[[ ${#names[@]} -gt 0 ]] || names=(update rollout rollout-0.5b grpo update-path)
if [[ $quick == 1 ]]; then
  dest=target/bench/quick
else
  dest=docs/bench
fi
mkdir -p "$dest"
for name in "${names[@]}"; do
  work="target/bench/$name"
  rm -rf "$work"
  case "$name" in
    update)
      if [[ $quick == 1 ]]; then
        OUT=$work BENCH_COMMAND="scripts/bench.sh --quick update" scripts/bench-update.sh qwen2.5-0.5b 128 1
      else
        OUT=$work BENCH_COMMAND="scripts/bench.sh update" scripts/bench-update.sh qwen2.5-0.5b 512,1024,2048,4096 2
      fi ;;
    rollout)
      if [[ $quick == 1 ]]; then
        OUT=$work PROMPTS=4 SAMPLES=4 NEW_TOKENS=32 BENCH_COMMAND="scripts/bench.sh --quick rollout" \
          scripts/bench-rollout.sh
      else
        OUT=$work BENCH_COMMAND="scripts/bench.sh rollout" scripts/bench-rollout.sh
      fi ;;
    rollout-0.5b)
      if [[ $quick == 1 ]]; then
        OUT=$work BENCH_NAME=$name PROMPTS=2 SAMPLES=2 NEW_TOKENS=16 \
          BENCH_COMMAND="scripts/bench.sh --quick rollout-0.5b" scripts/bench-rollout.sh "" crates/models/shapes/qwen2.5-0.5b.json
      else
        OUT=$work BENCH_NAME=$name PROMPTS=8 NEW_TOKENS=128 \
          BENCH_COMMAND="scripts/bench.sh rollout-0.5b" scripts/bench-rollout.sh "" crates/models/shapes/qwen2.5-0.5b.json
      fi ;;
    grpo)
      if [[ $quick == 1 ]]; then
        OUT=$work STEPS=2 BENCH_COMMAND="scripts/bench.sh --quick grpo" scripts/bench-grpo.sh
      else
        OUT=$work BENCH_COMMAND="scripts/bench.sh grpo" scripts/bench-grpo.sh
      fi ;;
    update-path)
      if [[ $quick == 1 ]]; then
        OUT=$work BENCH_COMMAND="scripts/bench.sh --quick update-path" scripts/bench-update-path.sh 1 4x256x32768
      else
        OUT=$work BENCH_COMMAND="scripts/bench.sh update-path" scripts/bench-update-path.sh 4
      fi ;;
  esac
  mkdir -p "$dest"
  cp "$work/$name.json" "$dest/$name.json"
  echo "bench: $dest/$name.json" >&2
done
if [[ $quick == 0 ]]; then
  cargo run -q -p rlvr-tests --bin bench-tables
fi
