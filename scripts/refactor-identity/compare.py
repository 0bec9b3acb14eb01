"""Compares two output folders of scripts/refactor-identity/workloads.sh: every non-timing metric
of every step (time/* and rollout/tokens_per_s differ by nature), the evaluations, logged samples
and final weights of each run, and the reports and outputs of eval, sample and sft, byte for byte.
Exits 1 when anything differs. Usage: compare.py BASE NEW"""
import json, sys, os, filecmp
a, b = sys.argv[1], sys.argv[2]
bad = 0
def metrics(p):
    return [json.loads(l) for l in open(p)]
for run in ["one", "two", "data"]:
    ma, mb = metrics(f"{a}/runs/{run}/metrics.jsonl"), metrics(f"{b}/runs/{run}/metrics.jsonl")
    n = 0; diff = 0
    assert len(ma) == len(mb), (run, len(ma), len(mb))
    for x, y in zip(ma, mb):
        keys = {k for k in x if not (k.startswith("time/") or k == "rollout/tokens_per_s")}
        kb = {k for k in y if not (k.startswith("time/") or k == "rollout/tokens_per_s")}
        if keys != kb: print(run, "keys differ", keys ^ kb); bad += 1
        for k in keys & kb:
            n += 1
            if x[k] != y[k]: diff += 1; bad += 1; print(run, x["step"], k, x[k], y[k]) if diff < 5 else None
    print(f"{run}: {len(ma)} lines, {n} values compared, {diff} differ")
    for f in ["eval/before.json", "eval/after.json", "samples.jsonl", "checkpoints/step-%d/model/model.safetensors" % (150 if run != "data" else 3)]:
        same = filecmp.cmp(f"{a}/runs/{run}/{f}", f"{b}/runs/{run}/{f}", shallow=False)
        print(f"  {f}: {'identical' if same else 'DIFFERENT'}"); bad += not same
for f in ["ev/eval.json", "sample.log", "sample-data.log", "sft.log", "sftm/model.safetensors", "eval.log"]:
    same = filecmp.cmp(f"{a}/{f}", f"{b}/{f}", shallow=False)
    print(f"{f}: {'identical' if same else 'DIFFERENT'}"); bad += not same
print("ALL EQUAL" if bad == 0 else f"{bad} differences")
sys.exit(1 if bad else 0)
