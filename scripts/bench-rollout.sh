#!/usr/bin/env bash
# Rollout throughput, side by side on the same weights and prompts: 32 prompts × 8 samples × up
# to 256 new tokens at temperature 1, with a stop set that ends responses at varied lengths.
#   scripts/bench-rollout.sh [BASE_COMMIT] [CONFIG_JSON]
# Runs this build's generation, transformers' `generate` (sdpa) and, given BASE_COMMIT, the
# generation of that commit (built in a git worktree with its own target folder), then prints
# tokens/s and the ratios. CONFIG_JSON defaults to scripts/bench/qwen2-39m.json.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
base=${1:-}
config=${2:-scripts/bench/qwen2-39m.json}
out=${OUT:-target/bench-rollout}
rm -rf "$out"
mkdir -p "$out"
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
python=$(scripts/bench/venv.sh)
export LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
cargo build --release -p rlvr-models --example rollout_bench >&2
target/release/examples/rollout_bench "$config" "$out" 32 8 256 | tee "$out/rlvr.json"
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
  "$root/target/bench-rollout-base-target/release/examples/rollout_bench" "$config" "$out" 32 8 256 \
    | sed 's/"impl":"rlvr"/"impl":"rlvr-base"/' | tee "$out/base.json"
  git worktree remove --force "$wt"
fi
"$python" scripts/bench/rollout_transformers.py "$out" 8 256 2>/dev/null | tee "$out/transformers.json"
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
r = {n: json.load(open(f"{out}/{n}.json")) for n in ("rlvr", "base", "transformers")
     if os.path.exists(f"{out}/{n}.json")}
for n, v in r.items():
    print(f"{n:13s} {v['tokens_per_s']:8.1f} tokens/s ({v['generated_tokens']:.0f} tokens, mean length {v['mean_length']:.1f}, {v['seconds']:.1f} s)")
print(f"rlvr / transformers: {r['rlvr']['tokens_per_s'] / r['transformers']['tokens_per_s']:.2f}x")
if "base" in r:
    print(f"rlvr / base commit:  {r['rlvr']['tokens_per_s'] / r['base']['tokens_per_s']:.2f}x")
PY
