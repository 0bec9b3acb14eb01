#!/usr/bin/env bash
# GPU checks of the CUDA path, with binaries built elsewhere against the CUDA libtorch of the
# GPU machine (same version as its PyTorch; see README "Your own libtorch"):
#   scripts/gpu-check.sh BIN_DIR OUT_DIR
# BIN_DIR holds `rlvr`, the `hf_reference` test binary, the `update_scale` and `update_path` bench
# binaries and the `rollout_bench` example: scripts/gpu-build.sh builds them on a CPU machine
# against the GPU machine's PyTorch version and packs them (.gpubin/bins.tar.xz; its header has the
# device command). libtorch comes from the machine's PyTorch; libtorch_cuda is preloaded so its
# CUDA hooks register.
# Sections, in the order they run (most needed first, so a cut run keeps them): `reference`
# (transformers' reference logits / greedy ids / cached decoding on the GPU), `train` (the default
# SimKO run on cuda vs cpu, same seed; rlvr eval on cuda; a qwen2-tiny run on MATH parquet), `nccl`
# (the NCCL engine, librlvr_nccl.so built here by scripts/build-nccl-shim.sh, world size 1 running
# training steps on CUDA; docs/distributed.md), `update` (the 1.5B-shape bf16 update: tokens/s,
# memory, MFU against the H100/H200 989 TFLOP/s bf16 peak), `plan` (the memory planner against the
# measured GPU peak of one training step on the 1.5B shape, NCCL world size 1, optimizer and full
# sharding, bf16; needs `nccl`), `rollout` (tokens/s, 0.5B and 1.5B shapes), `lora` (rank 16,
# bf16 frozen base, vs full: step time and peak GPU memory), `updatepath` (the update step from
# logits), `serve` (`rlvr serve --device cuda` on the 1.5B shape: tokens/s at 64 concurrent
# /generate requests, one disk weight sync; needs `rollout`), `async` (`rlvr serve` + the trainer
# on the same GPU, steps/s at train.max_staleness = 0, 1, 2; docs/async.md; needs `rollout`).
# Each section prints its start time. Choose sections with GPU_CHECKS="nccl update" (default: all);
# GPU_BUDGET_S=N starts no section after N seconds.
set -uo pipefail
BIN=$1
OUT=$2
mkdir -p "$OUT"
TORCH_LIB=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
export LD_PRELOAD="$TORCH_LIB/libtorch_cuda.so"
TIMEFORMAT="wall %R s"
checks="${GPU_CHECKS:-reference train nccl update lora updatepath rollout serve async plan}"
# A section starts only while fewer than GPU_BUDGET_S seconds have passed (default: no limit), so a
# lease's end cuts whole sections and the JSON below is still written.
want() {
  [[ " $checks " == *" $1 "* ]] || return 1
  if (( SECONDS >= ${GPU_BUDGET_S:-1000000} )); then echo "== skipped $1: GPU_BUDGET_S passed"; return 1; fi
  echo "== [$(date +%T), ${SECONDS} s] section $1"
}
# The peak GPU memory used (MiB, nvidia-smi) while process $1 runs.
gpu_peak() {
  local peak=0 used
  while kill -0 "$1" 2>/dev/null; do
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
    (( used > peak )) && peak=$used
    sleep 0.5
  done
  echo "$peak"
}
R=/tmp/gpu-runs
rm -rf "$R"
if want reference; then
echo "== transformers reference checks on cuda"
RLVR_TEST_DEVICE=cuda "$BIN/hf_reference" --test-threads=1 2>&1 | tee "$OUT/hf_reference.log"
fi
if want train; then
for dev in cuda cpu; do
  echo "== default run on $dev"
  { time "$BIN/rlvr" train --device "$dev" --runs-dir "$R" --name "default-$dev" 2>&1 \
    | grep -v '^step ' ; } 2>&1 | tee "$OUT/train-$dev.log"
  cp "$R/default-$dev/metrics.jsonl" "$OUT/metrics-$dev.jsonl" 2>/dev/null
done
echo "== eval on cuda"
"$BIN/rlvr" eval --run "$R/default-cuda" -n 64 --device cuda --out "$R/eval-cuda" 2>&1 | tee "$OUT/eval-cuda.log"
echo "== qwen2-tiny on MATH parquet, cuda"
"$BIN/rlvr" train --device cuda --runs-dir "$R" --name hf --algo simko \
  --model crates/models/tests/fixtures/qwen2-tiny --data crates/rewards/tests/data/math_test.parquet \
  --steps 3 --set train.prompts_per_step=4 --set train.samples_per_prompt=4 \
  --set train.max_new_tokens=32 --set train.eval_problems=4 --set train.eval_samples=4 \
  --set data.holdout=10 2>&1 | tee "$OUT/hf-cuda.log"
fi
if want nccl; then
  echo "== NCCL engine (c10d ProcessGroupNCCL), world size 1: training steps on cuda"
  { time scripts/build-nccl-shim.sh /tmp/rlvr-nccl ; } 2>&1 | tee "$OUT/nccl-build.log"
  RLVR_DIST_BACKEND=nccl RLVR_NCCL_SHIM=/tmp/rlvr-nccl/librlvr_nccl.so "$BIN/rlvr" train --device cuda \
    --runs-dir "$R" --name nccl --steps 5 --set train.eval_problems=0 2>&1 | tee "$OUT/nccl.log"
  cp "$R/nccl/metrics.jsonl" "$OUT/metrics-nccl.jsonl" 2>/dev/null
  RLVR_DIST_BACKEND=nccl RLVR_NCCL_SHIM=/tmp/rlvr-nccl/librlvr_nccl.so WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 \
    MASTER_ADDR=127.0.0.1 MASTER_PORT=29512 "$BIN/rlvr" train --device cuda --runs-dir "$R" \
    --name nccl-torchrun --steps 2 --set train.eval_problems=0 2>&1 | tail -3 | tee -a "$OUT/nccl.log"
fi
if want update; then
echo "== qwen2.5-1.5b shape: bf16 mixed-precision update on cuda (2 responses, checkpointing)"
for len in 1024 4096; do
  RLVR_BENCH_DEVICE=cuda RLVR_BENCH_SHAPE=qwen2.5-1.5b RLVR_BENCH_LENGTHS=$len RLVR_BENCH_STEPS=3 \
    "$BIN/update_scale" | tee -a "$OUT/update-1.5b.jsonl" &
  peak=$(gpu_peak $!)
  echo "{\"response_tokens\": $len, \"gpu_memory_used_peak_mib\": $peak}" | tee -a "$OUT/update-1.5b-memory.jsonl"
done
python3 - "$OUT/update-1.5b.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "model_tflops_per_s" in r:
        print(f"2 x {r['response_tokens']}: {r['tokens_per_s']:.0f} tokens/s, "
              f"{r['model_tflops_per_s']:.1f} TFLOP/s, MFU {r['model_tflops_per_s'] / 989:.1%}")
PY
fi
if want plan; then
echo "== rlvr plan vs measured: qwen2.5-1.5b shape, one step on cuda (NCCL, world size 1, optimizer and full sharding, bf16)"
if [[ -f /tmp/rlvr-nccl/librlvr_nccl.so ]]; then
  for sharding in optimizer full; do
  RLVR_DIST_BACKEND=nccl RLVR_NCCL_SHIM=/tmp/rlvr-nccl/librlvr_nccl.so timeout 150 "$BIN/rlvr" train \
    --device cuda --runs-dir "$R" --name "plan-1.5b-$sharding" --model qwen2.5-1.5b-shape --task countdown \
    --steps 1 --set train.prompts_per_step=1 --set train.samples_per_prompt=2 \
    --set train.max_new_tokens=1024 --set train.micro_batch_size=2 --set train.eval_problems=0 \
    --set train.sharding=$sharding --set model.mixed_precision=bf16 > "$OUT/plan-1.5b-$sharding.log" 2>&1 &
  peak=$(gpu_peak $!)
  "$BIN/rlvr" plan --model qwen2.5-1.5b --sharding $sharding --prompt-tokens 64 \
    --response-tokens 1024 --micro-batch 2 --rollout-rows 2 | tee "$OUT/plan-1.5b-$sharding.txt"
  echo "$sharding: measured GPU memory used peak (nvidia-smi, CUDA context included): $peak MiB" | tee -a "$OUT/plan-1.5b-$sharding.txt"
  tail -2 "$OUT/plan-1.5b-$sharding.log"
  done
else
  echo "plan: run the nccl section first (it builds the shim)"
fi
fi
if want rollout; then
echo "== generation on cuda (bf16): 32 prompts x 8 samples x 256 tokens, qwen2.5-0.5b and 1.5b shapes"
for shape in qwen2.5-0.5b qwen2.5-1.5b; do
  mkdir -p "$R/rollout-$shape"
  RLVR_BENCH_DEVICE=cuda "$BIN/rollout_bench" "crates/models/shapes/$shape.json" "$R/rollout-$shape" 32 8 256 \
    | tee -a "$OUT/rollout-cuda.jsonl"
done
fi
if want lora; then
echo "== qwen2.5-1.5b shape: LoRA (rank 16, all-linear, bf16 frozen base) vs full bf16 update on cuda"
for r in 0 16; do
  RLVR_BENCH_DEVICE=cuda RLVR_BENCH_SHAPE=qwen2.5-1.5b RLVR_BENCH_LENGTHS=1024 RLVR_BENCH_STEPS=3 \
    RLVR_BENCH_LORA=$r "$BIN/update_scale" | tee -a "$OUT/lora-1.5b.jsonl" &
  peak=$(gpu_peak $!)
  echo "{\"lora_rank\": $r, \"gpu_memory_used_peak_mib\": $peak}" | tee -a "$OUT/lora-1.5b-memory.jsonl"
done
fi
if want updatepath && [[ -x "$BIN/update_path" ]]; then
  echo "== update step from logits on cuda, GRPO vs SimKO (as the trainer runs it, and autograd)"
  for size in 16x1024x32768 8x4096x151936; do
    RLVR_BENCH_DEVICE=cuda RLVR_BENCH_SIZE=$size "$BIN/update_path" --bench --warm-up-time 1 \
      --measurement-time 3 2>&1 | grep -E "^update_|time:" | tee -a "$OUT/update-path-cuda.log"
  done
fi
if want serve; then
echo "== rlvr serve --device cuda --dtype bf16, qwen2.5-1.5b shape: 64 concurrent /generate (n = 4, <= 256 tokens), one disk sync"
model="$R/rollout-qwen2.5-1.5b/model"
if [[ -d "$model" ]]; then
  "$BIN/rlvr" serve --model "$model" --device cuda --dtype bf16 --port 0 > "$OUT/serve.out" 2> "$OUT/serve.err" &
  spid=$!
  for _ in $(seq 300); do grep -q listening "$OUT/serve.out" 2>/dev/null && break; sleep 0.2; done
  url=$(sed -n 's/.*listening on //p' "$OUT/serve.out")
  python3 - "$url" "$R/rollout-qwen2.5-1.5b/prompts.json" "$model" <<'PY' | tee -a "$OUT/serve-cuda.jsonl"
import json, sys, threading, time, urllib.request
url, prompts_file, model = sys.argv[1:4]
prompts = json.load(open(prompts_file))
def post(path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=3600))
res = [None] * 64
def ask(i):
    res[i] = post("/generate", {"input_ids": prompts[i % len(prompts)], "sampling_params": {
        "max_new_tokens": 256, "n": 4, "sampling_seed": i, "ignore_eos": True}})
ask(0)
ts = [threading.Thread(target=ask, args=(i,)) for i in range(64)]
t0 = time.time()
for t in ts: t.start()
for t in ts: t.join()
secs = time.time() - t0
tokens = sum(len(s["output_ids"]) for r in res for s in r)
t1 = time.time()
ok = post("/update_weights_from_disk", {"model_path": model, "weight_version": "1"})
sync = time.time() - t1
print(json.dumps({"check": "serve-1.5b-cuda", "requests": 64, "tokens": tokens, "seconds": secs,
                  "tokens_per_s": tokens / secs, "disk_sync_s": sync, "sync_ok": ok.get("success")}))
PY
  kill $spid 2>/dev/null
else
  echo "serve: run the rollout section first (it writes $model)"
fi
fi
if want async; then
echo "== asynchronous training, qwen2.5-1.5b shape on cuda: rlvr serve (bf16) + trainer (bf16 mixed precision), k = 0, 1, 2"
model="$R/rollout-qwen2.5-1.5b/model"
if [[ -d "$model" ]]; then
  cp crates/models/tests/fixtures/qwen2-tiny/tokenizer.json crates/models/tests/fixtures/qwen2-tiny/tokenizer_config.json "$model/"
  "$BIN/rlvr" serve --model "$model" --device cuda --dtype bf16 --port 0 > "$OUT/async-serve.out" 2> "$OUT/async-serve.err" &
  spid=$!
  for _ in $(seq 300); do grep -q listening "$OUT/async-serve.out" 2>/dev/null && break; sleep 0.2; done
  url=$(sed -n 's/.*listening on //p' "$OUT/async-serve.out")
  for k in 0 1 2; do
    timeout 100 "$BIN/rlvr" train --device cuda --runs-dir "$R" --name "async-k$k" --model "$model" \
      --task countdown --steps 4 --set train.prompts_per_step=8 --set train.samples_per_prompt=8 \
      --set train.max_new_tokens=256 --set train.eval_problems=0 --set model.mixed_precision=bf16 \
      --set algo.loss.entropy_coef=0.05 --set train.max_staleness=$k --set rollout.engine=server \
      --set "rollout.urls=[\"$url\"]" > "$OUT/async-k$k.log" 2>&1 || tail -5 "$OUT/async-k$k.log"
    cp "$R/async-k$k/metrics.jsonl" "$OUT/metrics-async-k$k.jsonl" 2>/dev/null
  done
  kill $spid 2>/dev/null
  python3 - "$R" <<'PY' | tee "$OUT/async-1.5b.txt"
import json, os, sys
base = None
for k in (0, 1, 2):
    path = f"{sys.argv[1]}/async-k{k}/metrics.jsonl"
    if not os.path.exists(path):
        print(f"k={k}: no metrics"); continue
    m = [json.loads(l) for l in open(path)][1:]
    rate = len(m) / sum(x["time/step"] for x in m)
    base = base or rate
    gen = sum(x["time/rollout"] for x in m) / len(m)
    upd = sum(x["time/update"] + x["time/old_stats"] for x in m) / len(m)
    print(f"k={k}: {rate:.3f} steps/s ({rate / base:.2f}x k=0), generate {gen:.2f} s, update {upd:.2f} s per step")
PY
else
  echo "async: run the rollout section first (it writes $model)"
fi
fi
# The GPU figures as docs/bench-style JSON ($OUT/gpu.json; copied to docs/bench/gpu.json with a
# `bench:gpu` block in docs/performance.md, `bench-tables` renders them).
if [[ -f scripts/bench/record.py ]]; then
  # The commit the binaries name (the device machine gets the working tree without .git).
  git rev-parse HEAD >/dev/null 2>&1 || export RLVR_BENCH_COMMIT="$("$BIN/rlvr" --version | sed -n 's/.*commit \([0-9a-f]*\).*/\1/p')"
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  python3 scripts/bench/record.py gpu "scripts/gpu-check.sh" "{\"what\": \"GPU checks on $gpu\", \"gpu\": \"$gpu\"}" \
    "$OUT/gpu.json" "update-1.5b=$OUT/update-1.5b.jsonl" "update-1.5b-memory=$OUT/update-1.5b-memory.jsonl" \
    "lora-1.5b=$OUT/lora-1.5b.jsonl" "lora-1.5b-memory=$OUT/lora-1.5b-memory.jsonl" \
    "rollout=$OUT/rollout-cuda.jsonl" "serve=$OUT/serve-cuda.jsonl"
fi
echo "== done after ${SECONDS} s"
