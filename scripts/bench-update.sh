#!/usr/bin/env bash
# One update (forward + backward of the loss, AdamW step) of a real model shape at several
# response lengths: rlvr (SimKO loss, chunked LM head, activation checkpointing) next to PyTorch +
# transformers (sdpa, gradient checkpointing, plain log-softmax loss), each length in its own
# process, the two implementations alternating length by length; prints both JSON lines and the
# rlvr/PyTorch ratios of time and peak RSS.
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
: > "$out/pytorch.jsonl"
# One length at a time, rlvr then PyTorch, so both see the same machine conditions.
for len in ${lengths//,/ }; do
  ( ulimit -v "$limit_kb"
    RLVR_BENCH_SHAPE=$shape RLVR_BENCH_LENGTHS=$len RLVR_BENCH_STEPS=$steps "$bin" ) | tee -a "$out/rlvr.jsonl"
  ( ulimit -v "$limit_kb"
    "$python" scripts/bench/update_torch.py "crates/models/shapes/$shape.json" "$len" 2 32 "$steps" ) | tee -a "$out/pytorch.jsonl"
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = {}
for name in ("rlvr", "pytorch"):
    for line in open(f"{out}/{name}.jsonl"):
        r = json.loads(line)
        rows.setdefault(int(r["response_tokens"]), {})[name] = r
print("| response tokens | rlvr s | PyTorch s | time ratio | rlvr peak RSS GiB | PyTorch peak RSS GiB | memory ratio |")
print("|---|---|---|---|---|---|---|")
for n in sorted(rows):
    a, b = rows[n].get("rlvr", {}), rows[n].get("pytorch", {})
    def cell(r, k, scale=1.0):
        return f"{r[k] / scale:.1f}" if k in r else "failed"
    def ratio(k):
        return f"{a[k] / b[k]:.2f}" if k in a and k in b else "—"
    print(f"| 2 × {n} | {cell(a, 'seconds')} | {cell(b, 'seconds')} | {ratio('seconds')} | "
          f"{cell(a, 'peak_rss_mib', 1024)} | {cell(b, 'peak_rss_mib', 1024)} | {ratio('peak_rss_mib')} |")
PY
