#!/usr/bin/env bash
# Peak memory per rank of data-parallel training with and without optimizer sharding
# (docs/distributed.md), Qwen2.5-0.5B shape (random weights, character tokenizer), countdown
# prompts, one step: each rank samples 2 responses of RESPONSE tokens (a random model does not
# stop) and trains on them (2 × RESPONSE response tokens per rank), the step's checkpoint
# written. Ranks are started by hand with the torchrun variables, each under /usr/bin/time
# (peak RSS = its maximum resident set), one libtorch thread each.
# VMEM_GIB=8 runs each rank under `ulimit -v` (GiB of address space): a rank that needs more
# fails with an out-of-memory error instead of the machine swapping or the kernel killing it.
# Each rank's step time (time/step of metrics.jsonl) is printed too.
#   RESPONSE=512 scripts/bench-sharding.sh ["none:1 optimizer:2 gradients:2 full:3 ..."]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out=${OUT:-target/bench-sharding}
response=${RESPONSE:-512}
configs=${1:-"none:1 none:2 optimizer:2 optimizer:3"}
source scripts/bench/setup.sh
bench_setup "$out"
cargo build --release -p rlvr-cli >&2
rlvr="$root/target/release/rlvr"
port=29600
for c in $configs; do
  sharding=${c%%:*}
  ranks=${c##*:}
  port=$((port + 1))
  name="$sharding-$ranks"
  pids=()
  for r in $(seq 0 $((ranks - 1))); do
    ( if [[ -n "${VMEM_GIB:-}" ]]; then ulimit -v $((VMEM_GIB * 1024 * 1024)); fi
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=$ranks LOCAL_WORLD_SIZE=$ranks MASTER_ADDR=127.0.0.1 \
      MASTER_PORT=$port RLVR_COLLECTIVE_TIMEOUT=3600 \
      exec /usr/bin/time -f "%M" -o "$out/$name-rank$r.kb" \
      "$rlvr" train --runs-dir "$out/runs" --name "$name" --model qwen2.5-0.5b-shape \
      --task countdown --steps 1 --set train.prompts_per_step="$ranks" \
      --set train.samples_per_prompt=2 --set train.max_new_tokens="$response" \
      --set train.micro_batch_size=2 --set train.eval_problems=0 --set train.threads=1 \
      --set train.tensorboard=false --set train.sharding="$sharding" \
      > "$out/$name-rank$r.log" 2>&1 ) &
    pids+=($!)
  done
  status=0
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  if [[ $status -ne 0 ]]; then
    echo "bench-sharding: $name failed; see $out/$name-rank*.log" >&2
    for r in $(seq 0 $((ranks - 1))); do tail -2 "$out/$name-rank$r.log" >&2; done
    echo "failed" > "$out/$name.status"
  else
    echo "ok" > "$out/$name.status"
  fi
  # A 0.5B checkpoint is 6 GB (model + moments): measured, then dropped.
  rm -rf "$out/runs/$name/checkpoints"
done
python3 - "$out" "$configs" "$response" <<'PY'
import glob, json, sys
out, configs, response = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
print(f"Qwen2.5-0.5B shape, 2 x {response} response tokens per rank, one step; peak RSS per rank (GiB)")
rows = []
for c in configs:
    sharding, ranks = c.split(":")
    peaks = []
    for r in range(int(ranks)):
        try:
            peaks.append(int(open(f"{out}/{sharding}-{ranks}-rank{r}.kb").read().split()[-1]) / 2**20)
        except (OSError, ValueError, IndexError):
            peaks.append(float("nan"))
    try:
        status = open(f"{out}/{sharding}-{ranks}.status").read().strip()
    except OSError:
        status = "?"
    update_s = step_s = float("nan")
    try:
        lines = open(f"{out}/runs/{sharding}-{ranks}/metrics.jsonl").read().splitlines()
        last = json.loads(lines[-1])
        update_s = last.get("time/update", float("nan"))
        step_s = last.get("time/step", float("nan"))
    except (OSError, ValueError, IndexError):
        pass
    rows.append({"sharding": sharding, "ranks": int(ranks), "peak_rss_gib": peaks,
                 "status": status, "update_s": update_s, "step_s": step_s})
    print(f"{sharding:10s} {ranks} ranks: " + ", ".join(f"{p:.2f}" for p in peaks)
          + f"  [{status}, update {update_s:.1f} s, step {step_s:.1f} s]")
json.dump(rows, open(f"{out}/peaks.json", "w"), indent=1)
PY
