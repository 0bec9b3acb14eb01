#!/usr/bin/env bash
# A whole GRPO step at the Qwen2.5-0.5B shape, rlvr next to TRL's GRPOTrainer on the same work:
# random weights, 2 prompts × 8 samples × up to 64 new tokens at temperature 1 (a random model
# rarely stops, so nearly every response is 64 tokens), a has-a-digit reward
# (scripts/bench/has_digit.py), PPO-clip GRPO without a reference model, one optimizer step per
# batch, gradient checkpointing, f32, the same thread count; STEPS steps each (default 5), the
# median of steps 2.. reported, and each program's peak RSS. TRL runs twice: with gradient
# checkpointing (its memory-saving setting, as rlvr's) and without (every activation kept: its
# fastest setting, at more memory). rlvr spends memory TRL's
# checkpointing does not on time: the rollout records its forward passes and the update starts
# from them instead of running the decoder forward again (train.rollout_activations_mib, ~1.4 GiB
# here; the metric actor/from_rollout_record says it was used), and it keeps the first LM-head
# chunks' logits (model.keep_logits_mib); model.keep_projections_mib keeps every layer's
# q/k/v, gate and up outputs when an update runs its own forward — same gradients up to float
# rounding, less computation; both peaks are recorded next to the times. Writes $OUT/{rlvr,trl}.json and records $OUT/grpo.json
# (scripts/bench.sh copies it to docs/bench/). Installs TRL into the bench venv on first use.
#   scripts/bench-grpo.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
steps=${STEPS:-5}
threads=${THREADS:-2}
out=${OUT:-target/bench-grpo}
rm -rf "$out"
mkdir -p "$out"
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
python=$(scripts/bench/venv.sh)
"$python" -c "import trl" 2>/dev/null || "$python" -m pip install -q trl >&2
export LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
cargo build --release -p rlvr-cli >&2
alphabet="0123456789+-*=: "
python3 - "$out/prompts.jsonl" <<'PY'
import json, random, sys
rng = random.Random(0)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        a, b = rng.randrange(100), rng.randrange(100)
        f.write(json.dumps({"prompt": f"{a}+{b}=", "ground_truth": str(a + b)}) + "\n")
PY
cat > "$out/grpo.toml" <<'TOML'
[reward.default]
type = "python-function"
path = "scripts/bench/has_digit.py"
TOML
# The peak RSS of the largest process the wrapper waited for (rlvr; its reward processes are small).
peak_rss() {
  python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
sys.exit(r.returncode)' "$@"
}
keep_projections_mib=${KEEP_PROJECTIONS_MIB:-1280}
keep_logits_mib=${KEEP_LOGITS_MIB:-512}
rollout_activations_mib=${ROLLOUT_ACTIVATIONS_MIB:-2048}
OMP_NUM_THREADS=$threads peak_rss "$out/rlvr-peak" target/release/rlvr train --model qwen2.5-0.5b-shape --algo grpo \
  --data "$out/prompts.jsonl" --config "$out/grpo.toml" --steps "$steps" \
  --runs-dir "$out/runs" --name rlvr \
  --set data.holdout=0 --set train.eval_problems=0 --set train.prompts_per_step=2 \
  --set train.samples_per_prompt=8 --set train.max_new_tokens=64 --set train.micro_batch_size=16 \
  --set train.lr=1e-6 --set train.grad_clip=1.0 --set train.log_samples=0 \
  --set train.checkpoint_every=0 --set train.tensorboard=false \
  --set model.keep_projections_mib="$keep_projections_mib" --set model.keep_logits_mib="$keep_logits_mib" \
  --set train.rollout_activations_mib="$rollout_activations_mib" >&2
python3 - "$out/runs/rlvr/metrics.jsonl" "$threads" "$out/rlvr-peak" "$keep_projections_mib" "$keep_logits_mib" "$rollout_activations_mib" <<'PY' | tee "$out/rlvr.json"
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
peak = float(open(sys.argv[3]).read())
recorded = [r.get("actor/from_rollout_record", 0.0) for r in m]
if int(sys.argv[6]) > 0 and min(recorded) < 1.0:
    sys.exit(f"bench-grpo: the update ran its own forward in some steps ({recorded}): the rollout's record did not fit train.rollout_activations_mib = {sys.argv[6]}")
print(json.dumps({"impl": "rlvr", "step_seconds": [r["time/step"] for r in m],
                  "rollout_seconds": [r["time/rollout"] for r in m],
                  "update_seconds": [r["time/update"] for r in m],
                  "old_stats_seconds": [r.get("time/old_stats", 0.0) for r in m],
                  "mean_length": [r["rollout/response_len"] for r in m],
                  "peak_rss_mib": peak, "keep_projections_mib": int(sys.argv[4]),
                  "keep_logits_mib": int(sys.argv[5]), "rollout_activations_mib": int(sys.argv[6]),
                  "from_rollout_record": recorded, "threads": int(sys.argv[2])}))
PY
# The run's final checkpoint (weights and AdamW moments of the 0.5B shape, ~6 GB) is not needed.
cp "$out/runs/rlvr/metrics.jsonl" "$out/rlvr-metrics.jsonl"
rm -rf "$out/runs"
OMP_NUM_THREADS=$threads "$python" scripts/bench/grpo_trl.py crates/models/shapes/qwen2.5-0.5b.json \
  "$out/prompts.jsonl" "$steps" "$alphabet" 2>"$out/trl.log" | tail -1 | tee "$out/trl.json"
OMP_NUM_THREADS=$threads "$python" scripts/bench/grpo_trl.py crates/models/shapes/qwen2.5-0.5b.json \
  "$out/prompts.jsonl" "$steps" "$alphabet" no-checkpointing 2>"$out/trl-no-checkpointing.log" \
  | tail -1 | tee "$out/trl-no-checkpointing.json"
settings=$(printf '{"what": "whole GRPO step, Qwen2.5-0.5B shape, 2 prompts × 8 samples × ≤ 64 tokens", "steps": %s}' "$steps")
python3 scripts/bench/record.py grpo "${BENCH_COMMAND:-scripts/bench-grpo.sh}" "$settings" "$out/grpo.json" \
  "$out/rlvr.json" "$out/trl.json" "$out/trl-no-checkpointing.json"
cargo run -q -p rlvr-tests --bin bench-tables -- --print "$out/grpo.json"
