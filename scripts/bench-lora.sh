#!/usr/bin/env bash
# One SimKO update (forward + backward, AdamW step; activation checkpointing, chunked LM head) of
# a real model shape with every weight trained next to LoRA (all linear layers, rank R, α = 2R),
# at several response lengths, each in its own process (peak RSS is its own), the two
# alternating length by length; prints the JSON lines and the LoRA/full ratios of time and peak
# RSS.
#   scripts/bench-lora.sh [SHAPE] [LENGTHS] [RANK] [STEPS]
# Defaults: qwen2.5-0.5b, 512,1024,2048, 16, 2 (the last of STEPS updates is timed). Every
# process runs under `ulimit -v` of MEM_LIMIT_GB (default 22).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
shape=${1:-qwen2.5-0.5b}
lengths=${2:-512,1024,2048}
rank=${3:-16}
steps=${4:-2}
limit_kb=$(( ${MEM_LIMIT_GB:-22} * 1024 * 1024 ))
out=${OUT:-target/bench-lora}
mkdir -p "$out"
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
export LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
cargo bench -p rlvr-train --bench update_scale --no-run >&2
bin=$(ls -t target/release/deps/update_scale-* | grep -v '\.d$' | head -1)
: > "$out/full.jsonl"
: > "$out/lora.jsonl"
for len in ${lengths//,/ }; do
  for variant in full lora; do
    r=0; [[ $variant == lora ]] && r=$rank
    ( ulimit -v "$limit_kb"
      RLVR_BENCH_SHAPE=$shape RLVR_BENCH_LENGTHS=$len RLVR_BENCH_STEPS=$steps RLVR_BENCH_LORA=$r \
        "$bin" ) | tee -a "$out/$variant.jsonl"
  done
done
python3 - "$out" "$rank" <<'PY'
import json, sys
out, rank = sys.argv[1], sys.argv[2]
rows = {}
for name in ("full", "lora"):
    for line in open(f"{out}/{name}.jsonl"):
        r = json.loads(line)
        rows.setdefault(int(r["response_tokens"]), {})[name] = r
print(f"| response tokens | full s | LoRA r={rank} s | time ratio | full peak RSS GiB | LoRA peak RSS GiB | memory ratio |")
print("|---|---|---|---|---|---|---|")
for n in sorted(rows):
    a, b = rows[n].get("lora", {}), rows[n].get("full", {})
    def cell(r, k, scale=1.0):
        return f"{r[k] / scale:.1f}" if k in r else "failed"
    def ratio(k):
        return f"{a[k] / b[k]:.2f}" if k in a and k in b else "—"
    print(f"| 2 × {n} | {cell(b, 'seconds')} | {cell(a, 'seconds')} | {ratio('seconds')} | "
          f"{cell(b, 'peak_rss_mib', 1024)} | {cell(a, 'peak_rss_mib', 1024)} | {ratio('peak_rss_mib')} |")
PY
