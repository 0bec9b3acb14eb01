#!/usr/bin/env bash
# Asynchronous vs synchronous training on this CPU (docs/async.md): `rlvr serve` pinned to core 0
# and the trainer to core 1 (taskset, one libtorch thread each), `rollout.engine = "server"` with
# disk sync; steps/s with train.max_staleness = 0, 1, 2 on the same work.
#   ROUNDS=2 STEPS=8 scripts/bench-async.sh
# Workloads:
#   countdown  the default run (assets/countdown-base; 16 prompts × 8 samples × ≤ 12 tokens)
#   qwen2-39m  the 39M Qwen2 shape (scripts/bench/qwen2-39m.json, random init, the qwen2-tiny
#              tokenizer), countdown prompts, 2 prompts × 8 samples × 128 tokens, an entropy
#              bonus so the weights move (a random model scores 0)
# steps/s = (STEPS − 1) / the summed time/step of steps 2..STEPS (step 1 fills the pipeline).
# Each round runs k = 0, 1, 2 in turn; the medians over rounds are reported with the ratios.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out=${OUT:-target/bench-async}
rounds=${ROUNDS:-2}
steps=${STEPS:-8}
workloads=${WORKLOADS:-countdown qwen2-39m}
source scripts/bench/setup.sh
bench_setup "$out"
cargo build --release -p rlvr-cli >&2
cargo build --release -p rlvr-models --example rollout_bench >&2
rlvr="$root/target/release/rlvr"
if [[ $(nproc) -lt 2 ]]; then
  echo "bench-async: needs 2 cores (server on one, trainer on the other)" >&2
  exit 1
fi

# The 39M model: random init by rlvr's own fresh-model path, the fixture's tokenizer.
RLVR_BENCH_WARMUP=0 target/release/examples/rollout_bench scripts/bench/qwen2-39m.json \
  "$out/q39" 1 1 1 > /dev/null
cp crates/models/tests/fixtures/qwen2-tiny/tokenizer.json \
  crates/models/tests/fixtures/qwen2-tiny/tokenizer_config.json "$out/q39/model/"

server=""
trap '[[ -n "$server" ]] && kill $server 2>/dev/null || true' EXIT
serve() {
  [[ -n "$server" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  taskset -c 0 "$rlvr" serve --model "$1" --port 0 --threads 1 > "$out/serve.out" 2> "$out/serve.err" &
  server=$!
  for _ in $(seq 300); do grep -q listening "$out/serve.out" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/.*listening on //p' "$out/serve.out")
  [[ -n "$url" ]] || { echo "bench-async: rlvr serve did not start" >&2; cat "$out/serve.err" >&2; exit 1; }
}

for w in $workloads; do
  case $w in
    countdown)
      model="$root/assets/countdown-base"
      args=() ;;
    qwen2-39m)
      model="$root/$out/q39/model"
      args=(--model "$model" --task countdown --set train.prompts_per_step=2
            --set train.samples_per_prompt=8 --set train.max_new_tokens=128
            --set algo.loss.entropy_coef=0.05) ;;
    *) echo "bench-async: unknown workload $w" >&2; exit 2 ;;
  esac
  serve "$model"
  for r in $(seq "$rounds"); do
    for k in 0 1 2; do
      taskset -c 1 "$rlvr" train --runs-dir "$out/runs" --name "$w-k$k-r$r" --steps "$steps" \
        "${args[@]}" --set train.eval_problems=0 --set train.threads=1 \
        --set train.tensorboard=false --set train.max_staleness=$k \
        --set rollout.engine=server --set "rollout.urls=[\"$url\"]" > "$out/$w-k$k-r$r.log" 2>&1 \
        || { echo "bench-async: $w k=$k failed; see $out/$w-k$k-r$r.log" >&2; tail -5 "$out/$w-k$k-r$r.log" >&2; exit 1; }
    done
  done
done

python3 - "$out" "$rounds" "$workloads" <<'PY'
import json, statistics, sys
out, rounds, workloads = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def load(name):
    return [json.loads(l) for l in open(f"{out}/runs/{name}/metrics.jsonl")]
print("workload    k  steps/s (median)  ratio vs k=0  per round             generate s  update s  trainer idle s  generator idle s")
for w in workloads:
    base = None
    for k in (0, 1, 2):
        per_round, gen, upd, idle_t, idle_g = [], [], [], [], []
        for r in range(1, rounds + 1):
            m = load(f"{w}-k{k}-r{r}")[1:]
            per_round.append(len(m) / sum(x["time/step"] for x in m))
            gen += [x["time/rollout"] for x in m]
            upd += [x["time/update"] + x["time/old_stats"] for x in m]
            idle_t += [x.get("async/idle_trainer_s", 0.0) for x in m]
            idle_g += [x.get("async/idle_generator_s", 0.0) for x in m]
        med = statistics.median(per_round)
        base = base or med
        rounds_txt = ", ".join(f"{x:.3f}" for x in per_round)
        print(f"{w:10s} {k:2d}  {med:16.3f}  {med / base:12.2f}  {rounds_txt:20s}  "
              f"{statistics.median(gen):10.3f}  {statistics.median(upd):8.3f}  "
              f"{statistics.median(idle_t):14.3f}  {statistics.median(idle_g):16.3f}")
PY
