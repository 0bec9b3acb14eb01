#!/usr/bin/env bash
# SimKO/GRPO time of the trainer's update path (bench `update_path`: chunked statistics, loss and
# analytic gradient into the logits from random logits, each chunk's gradient dropped once
# computed — what the trainer does next with it is the same for both) at each SIZE (BxTxV,
# default 16x1024x32768 and 4x1024x32768): GRPO and SimKO each in its own process, alternating
# which goes first, RUNS times (default 4); prints each run's criterion median and the ratio of
# the medians, and records docs/bench-style JSON in $OUT/update-path.json (scripts/bench.sh
# update-path; docs/performance.md, "SimKO vs GRPO update path").
#   scripts/bench-update-path.sh [RUNS] [SIZE...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs=${1:-4}
shift || true
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(16x1024x32768 4x1024x32768)
out=${OUT:-target/bench-update-path}
mkdir -p "$out"
scripts/libtorch.sh
scripts/protoc.sh
scripts/gloo.sh
export LIBTORCH="$root/.libtorch" LD_LIBRARY_PATH="$root/.libtorch/lib:${LD_LIBRARY_PATH:-}"
threads=${OMP_NUM_THREADS:-$(nproc)}
export OMP_NUM_THREADS=$threads
bin=$(cargo bench -p rlvr-algos --bench update_path --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "update_path" and m.get("executable"):
        print(m["executable"])')
median_ms() { # criterion's median time per iteration of one benchmark, in ms
  python3 -c 'import json, statistics, sys
d = json.load(open(sys.argv[1]))
print(round(statistics.median(t / i for t, i in zip(d["times"], d["iters"])) / 1e6, 1))' "$1"
}
: > "$out/rows.jsonl"
for size in "${sizes[@]}"; do
  declare -A all=([grpo]="" [simko]="")
  for i in $(seq "$runs"); do
    order=(grpo simko)
    (( i % 2 == 0 )) && order=(simko grpo)
    for algo in "${order[@]}"; do
      RLVR_BENCH_SIZE=$size "$bin" --bench "$algo\$" >/dev/null 2>&1
      ms=$(median_ms "target/criterion/update_$size/$algo/new/sample.json")
      echo "$size run $i $algo: $ms ms"
      printf '{"impl": "%s", "size": "%s", "run": %s, "ms": %s, "threads": %s}\n' \
        "$algo" "$size" "$i" "$ms" "$threads" >> "$out/rows.jsonl"
      all[$algo]+="$ms "
    done
  done
  python3 -c 'import statistics, sys
g, s = ([float(x) for x in a.split()] for a in sys.argv[2:4])
print(f"{sys.argv[1]}: GRPO median {statistics.median(g):.1f} ms, SimKO median {statistics.median(s):.1f} ms, SimKO/GRPO {statistics.median(s) / statistics.median(g):.3f}")' \
    "$size" "${all[grpo]}" "${all[simko]}"
  unset all
done
settings=$(printf '{"what": "update step from logits (statistics, loss, gradient into the logits) as the trainer runs it, SimKO vs GRPO", "sizes": "%s", "runs": %s}' "${sizes[*]}" "$runs")
python3 scripts/bench/record.py update-path "${BENCH_COMMAND:-scripts/bench-update-path.sh $runs ${sizes[*]}}" \
  "$settings" "$out/update-path.json" "$out/rows.jsonl"
cargo run -q -p rlvr-tests --bin bench-tables -- --print "$out/update-path.json"
