#!/usr/bin/env bash
# One update (forward + backward of the loss, AdamW step) of a real model shape at several
# response lengths: rlvr (SimKO loss, chunked LM head, activation checkpointing) next to two
# PyTorch + transformers baselines (sdpa, gradient checkpointing): the strong one (fused AdamW,
# LM head + log-softmax in checkpointed chunks of 1024 tokens), the same with every decoder layer
# under torch.compile, and the plain one (full logits, AdamW) — scripts/bench/update_torch.py.
# Each length in its own process, the implementations alternating length by length; writes
# $OUT/{rlvr,pytorch-strong,pytorch-strong-compiled,pytorch}.jsonl and prints the
# table (scripts/bench.sh records it as docs/bench/update.json).
#   scripts/bench-update.sh [SHAPE] [LENGTHS] [STEPS]
# Defaults: qwen2.5-0.5b, 512,1024,2048,4096, 1 (the last of STEPS updates is timed). Every
# process runs under `ulimit -v` of MEM_LIMIT_GB (default 22) so an implementation that needs
# more memory than the machine has fails alone (reported as "failed") instead of swapping.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
shape=${1:-qwen2.5-0.5b}
lengths=${2:-512,1024,2048,4096}
steps=${3:-1}
limit_kb=$(( ${MEM_LIMIT_GB:-22} * 1024 * 1024 ))
out=${OUT:-target/bench-update}
mkdir -p "$out"
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
python=$(scripts/bench/venv.sh)
export LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
cargo bench -p rlvr-train --bench update_scale --no-run >&2
bin=$(ls -t target/release/deps/update_scale-* | grep -v '\.d$' | head -1)
: > "$out/rlvr.jsonl"
: > "$out/pytorch-strong.jsonl"
: > "$out/pytorch-strong-compiled.jsonl"
: > "$out/pytorch.jsonl"
# One length at a time, rlvr then the baselines, so all see the same machine conditions.
for len in ${lengths//,/ }; do
  ( ulimit -v "$limit_kb"
    RLVR_BENCH_SHAPE=$shape RLVR_BENCH_LENGTHS=$len RLVR_BENCH_STEPS=$steps "$bin" ) | tee -a "$out/rlvr.jsonl"
  ( ulimit -v "$limit_kb"
    "$python" scripts/bench/update_torch.py --strong "crates/models/shapes/$shape.json" "$len" 2 32 "$steps" ) | tee -a "$out/pytorch-strong.jsonl"
  ( ulimit -v "$limit_kb"
    "$python" scripts/bench/update_torch.py --compile "crates/models/shapes/$shape.json" "$len" 2 32 "$steps" ) | tee -a "$out/pytorch-strong-compiled.jsonl"
  ( ulimit -v "$limit_kb"
    "$python" scripts/bench/update_torch.py "crates/models/shapes/$shape.json" "$len" 2 32 "$steps" ) | tee -a "$out/pytorch.jsonl"
done
settings=$(printf '{"what": "one update of the %s shape, 2 responses, SimKO (rlvr) / policy gradient (PyTorch), checkpointing", "shape": "%s", "lengths": "%s", "steps": %s, "memory_limit_gib": %s}' "$shape" "$shape" "$lengths" "$steps" "${MEM_LIMIT_GB:-22}")
python3 scripts/bench/record.py update "${BENCH_COMMAND:-scripts/bench-update.sh $shape $lengths $steps}" "$settings" \
  "$out/update.json" "$out/rlvr.jsonl" "$out/pytorch-strong.jsonl" \
  "$out/pytorch-strong-compiled.jsonl" "$out/pytorch.jsonl"
cargo run -q -p rlvr-tests --bin bench-tables -- --print "$out/update.json"
