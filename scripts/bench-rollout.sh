#!/usr/bin/env bash
# Rollout throughput, side by side on the same weights and prompts: 32 prompts × 8 samples × up
# to 256 new tokens at temperature 1, with a stop set that ends responses at varied lengths
# (PROMPTS, SAMPLES, NEW_TOKENS override them).
#   scripts/bench-rollout.sh [BASE_COMMIT] [CONFIG_JSON]
# Runs this build's generation, transformers' `generate` (sdpa; dynamic cache, then its static
# cache), vLLM's CPU build (offline `LLM.generate`, eager and compiled, at rlvr's thread count,
# with MKL's vendor check answered as rlvr answers it and with MKL's own answer;
# VLLM=0 leaves it out; scripts/bench/vllm-venv.sh installs it once) and, given BASE_COMMIT, the
# generation of that commit (built in a git worktree with its own target folder), then prints
# tokens/s and the ratios and records $OUT/$BENCH_NAME.json (default rollout; scripts/bench.sh
# copies it to docs/bench/). CONFIG_JSON defaults to scripts/bench/qwen2-39m.json. Each
# implementation generates the whole workload once untimed, then times it again (steady state:
# a trainer's rollouts after its first; vLLM allocates its KV cache at start-up, rlvr's allocator
# keeps the memory of the previous rollout).
export RLVR_BENCH_WARMUP=full
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
base=${1:-}
config=${2:-scripts/bench/qwen2-39m.json}
prompts=${PROMPTS:-32}
samples=${SAMPLES:-8}
new_tokens=${NEW_TOKENS:-256}
out=${OUT:-target/bench-rollout}
rm -rf "$out"
mkdir -p "$out"
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
python=$(scripts/bench/venv.sh)
export LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
cargo build --release -p rlvr-models --example rollout_bench >&2
target/release/examples/rollout_bench "$config" "$out" "$prompts" "$samples" "$new_tokens" | tee "$out/rlvr.json"
if [[ -n "$base" ]]; then
  wt="$root/target/bench-rollout-base"
  git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
  git worktree add -f "$wt" "$base" >&2
  ln -s "$root/.libtorch" "$wt/.libtorch"
  mkdir -p "$wt/.tools" "$wt/crates/models/examples"
  ln -s "$root/.tools/bin" "$wt/.tools/bin"
  cp crates/models/examples/rollout_bench.rs "$wt/crates/models/examples/"
  (cd "$wt" && CARGO_TARGET_DIR="$root/target/bench-rollout-base-target" \
     cargo build --release -p rlvr-models --example rollout_bench >&2)
  "$root/target/bench-rollout-base-target/release/examples/rollout_bench" "$config" "$out" "$prompts" "$samples" "$new_tokens" \
    | sed 's/"impl":"rlvr"/"impl":"rlvr-base"/' | tee "$out/base.json"
  git worktree remove --force "$wt"
fi
"$python" scripts/bench/rollout_transformers.py "$out" "$samples" "$new_tokens" 2>/dev/null | tee "$out/transformers.json"
"$python" scripts/bench/rollout_transformers.py --static "$out" "$samples" "$new_tokens" 2>/dev/null \
  | tee "$out/transformers-static.json"
if [[ "${VLLM:-1}" == 1 ]]; then
  # vLLM's CPU build, eager and compiled, at rlvr's thread count (VLLM=0 leaves it out).
  vllm_python=$(scripts/bench/vllm-venv.sh)
  threads=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["threads"])' "$out/rlvr.json")
  # Both with MKL's vendor check answered as in rlvr (python-mkl) and with MKL's own answer
  # (plain python, rows named vllm-MODE-mkl-own): vLLM's best is whichever is faster.
  for mkl in answered own; do
    py=$vllm_python suffix=""
    [[ $mkl == own ]] && py=${vllm_python%-mkl} suffix="-mkl-own"
    for mode in eager compiled; do
      name="vllm-$mode$suffix"
      OMP_NUM_THREADS=$threads "$py" scripts/bench/rollout_vllm.py "$out" "$samples" "$new_tokens" "$mode" \
        2>"$out/$name.log" | grep '^{"impl"' | sed "s/\"impl\": \"vllm-$mode\"/\"impl\": \"$name\"/" | tee "$out/$name.json" ||
        echo "{\"impl\": \"$name\", \"failed\": \"see $out/$name.log\"}" > "$out/$name.json"
    done
  done
fi
settings=$(printf '{"what": "rollouts, %s prompts × %s samples × ≤ %s tokens, %s", "config": "%s", "prompts": %s, "samples": %s, "new_tokens": %s, "warmup": "the whole workload once, untimed"}' \
  "$prompts" "$samples" "$new_tokens" "$(basename "$config" .json)" "$config" "$prompts" "$samples" "$new_tokens")
name=${BENCH_NAME:-rollout}
python3 scripts/bench/record.py rollout "${BENCH_COMMAND:-scripts/bench-rollout.sh $*}" "$settings" "$out/$name.json" \
  "$out/rlvr.json" "$out/base.json" "$out/transformers.json" "$out/transformers-static.json" \
  "$out/vllm-eager.json" "$out/vllm-compiled.json" "$out/vllm-eager-mkl-own.json" "$out/vllm-compiled-mkl-own.json"
cargo run -q -p rlvr-tests --bin bench-tables -- --print "$out/$name.json"
