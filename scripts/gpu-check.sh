#!/usr/bin/env bash
# GPU checks of the CUDA path, with binaries built elsewhere against the CUDA libtorch of the
# GPU machine (same version as its PyTorch; see README "Your own libtorch"):
#   scripts/gpu-check.sh BIN_DIR OUT_DIR
# BIN_DIR holds `rlvr` and the `hf_reference` test binary; libtorch comes from the machine's
# PyTorch (same version as the build), libtorch_cuda is preloaded so its CUDA hooks register.
# Checks: transformers' reference logits / greedy ids / cached decoding on the GPU, the default
# SimKO run on cuda vs cpu (same seed), rlvr eval on cuda, and a qwen2-tiny run on MATH parquet.
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
echo "== transformers reference checks on cuda"
RLVR_TEST_DEVICE=cuda "$BIN/hf_reference" --test-threads=1 2>&1 | tee "$OUT/hf_reference.log"
R=/tmp/gpu-runs
rm -rf "$R"
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
echo "== done"
