#!/usr/bin/env bash
# Data-parallel step time (docs/distributed.md, "Measured"): the default run (countdown, tiny model,
# 16 prompts × 8 samples) for STEPS steps (default 40) with 1 process and with `--nproc 2` on
# this machine, the mean step time over the steps after the first 5, the part of it spent in the
# all-reduce (`time/all_reduce`), and the bytes all-reduced per optimizer step, measured for the
# default model (from its checkpoint) and computed for the Qwen2.5-0.5B shape.
#   scripts/bench-distributed.sh [STEPS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
steps=${1:-40}
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
cargo build --release --quiet -p rlvr-cli
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 1 2; do
  target/release/rlvr train --runs-dir "$tmp" --name "n$n" --nproc "$n" --steps "$steps" \
    --set train.eval_problems=0 --set train.checkpoint_every=0 --set train.tensorboard=false >/dev/null
done
python3 - "$tmp" <<'PY'
import json, struct, sys, pathlib
tmp = pathlib.Path(sys.argv[1])
def mean(xs): return sum(xs) / max(len(xs), 1)
rows = {}
for n in (1, 2):
    lines = [json.loads(l) for l in open(tmp / f"n{n}" / "metrics.jsonl")][5:]
    rows[n] = (mean([l["time/step"] for l in lines]), mean([l.get("time/all_reduce", 0.0) for l in lines]),
               mean([l["time/update"] for l in lines]))
def params_of(path):
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    total = 0
    for k, v in header.items():
        if k != "__metadata__":
            c = 1
            for d in v["shape"]: c *= d
            total += c
    return total
ck = next((tmp / "n1" / "checkpoints").iterdir())
default = params_of(ck / "model" / "model.safetensors")
c = json.load(open("crates/models/shapes/qwen2.5-0.5b.json"))
h, i, l, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
kv = c["num_key_value_heads"] * h // c["num_attention_heads"]
layer = h * h + h + 2 * (h * kv + kv) + h * h + 3 * h * i + 2 * h  # q(+b) k,v(+b) o, mlp, norms
qwen = v * h + l * layer + h  # tied embeddings
for n, (step, ar, up) in rows.items():
    print(json.dumps({"ranks": n, "steps_averaged": len(lines), "step_s": round(step, 4), "update_s": round(up, 4),
                      "all_reduce_s": round(ar, 4), "all_reduce_share_of_step": round(ar / step, 3)}))
print(json.dumps({"ratio_step_2_over_1": round(rows[2][0] / rows[1][0], 3)}))
for name, p in (("default tiny model", default), ("Qwen2.5-0.5B shape", qwen)):
    b = 4 * p
    print(json.dumps({"model": name, "parameters": p, "f32_gradient_bytes_per_optimizer_step": b,
                      "ring_bytes_sent_per_rank_at_N": {str(n): round(2 * (n - 1) / n * b) for n in (2, 8, 16)}}))
PY
