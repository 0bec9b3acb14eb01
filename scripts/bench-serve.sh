#!/usr/bin/env bash
# Served vs in-process generation on the same work (scripts/bench-rollout.sh's: 32 prompts × 8
# samples × up to 256 new tokens on the 39M Qwen2 shape, temperature 1, the same seeds): rlvr's
# in-process `generate`, then `rlvr serve` on the same weights answering 32 concurrent
# `/generate` requests (one per prompt, n = 8) from a stdlib Python client. With the same seeds
# and streams both draw the same samples up to f32 rounding, so tokens/s compare the same work
# (the difference in generated tokens is printed). Run it with nothing else on the machine.
#   ROUNDS=3 scripts/bench-serve.sh [CONFIG_JSON]
# Each round runs both, in-process first; the ratio of the median tokens/s is reported.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
config=${1:-scripts/bench/qwen2-39m.json}
out=${OUT:-target/bench-serve}
source scripts/bench/setup.sh
bench_setup "$out"
cargo build --release -p rlvr-models --example rollout_bench >&2
cargo build --release -p rlvr-cli >&2
rounds=${ROUNDS:-3}
# Both sides warm up on the first prompt's 8 samples before timing.
export RLVR_BENCH_WARMUP=1
# The model and prompts (written by the first in-process run), then the server on them.
target/release/examples/rollout_bench "$config" "$out" 32 8 256 > "$out/inprocess-1.json"
target/release/rlvr serve --model "$out/model" --port 0 > "$out/serve.out" 2> "$out/serve.err" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$out/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.*listening on //p' "$out/serve.out")
client() {
python3 - "$url" "$out" "$config" <<'PY'

import json, sys, threading, time, urllib.request
url, out, config = sys.argv[1:4]
prompts = json.load(open(f"{out}/prompts.json"))
vocab = json.load(open(config))["vocab_size"]
stop = list(range(1, vocab + 1, 128))
results = [None] * len(prompts)
def ask(i):
    body = {"input_ids": prompts[i], "return_logprob": True, "sampling_params": {
        "max_new_tokens": 256, "n": 8, "sampling_seed": 0, "rlvr_stream": i * 8,
        "stop_token_ids": stop, "ignore_eos": True, "temperature": 1.0}}
    req = urllib.request.Request(f"{url}/generate", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    results[i] = json.load(urllib.request.urlopen(req, timeout=3600))
# Warm-up request (the in-process bench has no HTTP connection to open).
ask(0)
threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
t0 = time.time()
for t in threads: t.start()
for t in threads: t.join()
secs = time.time() - t0
tokens = sum(len(s["output_ids"]) for r in results for s in r)
print(json.dumps({"impl": "rlvr serve", "requests": len(prompts), "generated_tokens": tokens,
                  "seconds": secs, "tokens_per_s": tokens / secs}))
PY
}
client > "$out/served-1.json"
for r in $(seq 2 "$rounds"); do
  target/release/examples/rollout_bench "$config" "$out" 32 8 256 > "$out/inprocess-$r.json"
  client > "$out/served-$r.json"
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: [json.load(open(f"{out}/{name}-{r}.json")) for r in range(1, rounds + 1)]
ins, srv = load("inprocess"), load("served")
for r, (x, y) in enumerate(zip(ins, srv), 1):
    print(f"round {r}: in-process {x['tokens_per_s']:7.1f} tokens/s, rlvr serve {y['tokens_per_s']:7.1f} tokens/s, ratio {y['tokens_per_s'] / x['tokens_per_s']:.2f}")
med = lambda rs: statistics.median(r["tokens_per_s"] for r in rs)
a = {"tokens_per_s": med(ins), "generated_tokens": ins[0]["generated_tokens"], "seconds": statistics.median(r["seconds"] for r in ins)}
b = {"tokens_per_s": med(srv), "generated_tokens": srv[0]["generated_tokens"], "seconds": statistics.median(r["seconds"] for r in srv)}
json.dump(a, open(f"{out}/inprocess.json", "w")); json.dump(b, open(f"{out}/served.json", "w"))
print(f"medians of {rounds} rounds:")
print(f"in-process  {a['tokens_per_s']:8.1f} tokens/s ({a['generated_tokens']:.0f} tokens, {a['seconds']:.1f} s)")
print(f"rlvr serve  {b['tokens_per_s']:8.1f} tokens/s ({b['generated_tokens']:.0f} tokens, {b['seconds']:.1f} s)")
diff = (b["generated_tokens"] - a["generated_tokens"]) / a["generated_tokens"]
# The same seeds and streams draw the same samples up to f32 rounding: other rows in the batch
# change the sums, and a draw within rounding of a token boundary continues differently.
print(f"served / in-process: {b['tokens_per_s'] / a['tokens_per_s']:.2f}x (generated tokens differ by {100 * diff:+.2f}%)")
PY
