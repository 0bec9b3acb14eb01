#!/usr/bin/env bash
# Development-only PEFT round trip (needs the dev venv: scripts/bench/venv.sh, or RLVR_DEV_PYTHON):
# trains LoRA adapters with rlvr on the qwen2-tiny and llama-tiny fixture models (rank 8
# all-linear; rank 4 attention-only with rsLoRA), exports each as a PEFT adapter folder and as a
# merged Hugging Face folder, then checks in Python that PEFT loads the adapter with no warnings,
# that its logits equal transformers' on rlvr's merged export, and that PEFT's merge_and_unload
# equals rlvr's merge (scripts/peft-check/check.py).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${RLVR_DEV_PYTHON:-$(scripts/bench/venv.sh)}"
scripts/libtorch.sh && scripts/protoc.sh && scripts/gloo.sh
cargo build -q --bin rlvr
rlvr="$root/target/debug/rlvr"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0
for base in qwen2-tiny llama-tiny; do
  for shape in "8 16 \"all-linear\" false" "4 8 [\"q_proj\",\"k_proj\",\"v_proj\",\"o_proj\"] true"; do
    read -r rank alpha targets rslora <<<"$shape"
    name="$base-r$rank"
    "$rlvr" train --name "$name" --runs-dir "$out/runs" --algo grpo --steps 3 \
      --model "crates/models/tests/fixtures/$base" \
      --data crates/rewards/tests/data/amc23_test.parquet \
      --set train.prompts_per_step=2 --set train.samples_per_prompt=2 \
      --set train.max_new_tokens=8 --set train.eval_problems=0 --set train.lr=0.05 \
      --set algo.loss.entropy_coef=0.1 \
      --set "model.lora.rank=$rank" --set "model.lora.alpha=$alpha" \
      --set "model.lora.targets=$targets" --set "model.lora.rslora=$rslora" >/dev/null
    "$rlvr" export "$out/runs/$name" --out "$out/$name-adapter" >/dev/null
    "$rlvr" export "$out/runs/$name" --out "$out/$name-merged" --merge >/dev/null
    "$py" scripts/peft-check/check.py "crates/models/tests/fixtures/$base" \
      "$out/$name-adapter" "$out/$name-merged" \
      "crates/models/tests/fixtures/lora/$base-r4-all-linear" || status=1
  done
done
exit $status
