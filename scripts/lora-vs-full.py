"""LoRA against full fine-tuning from the runs of docs/sweeps/lora-countdown.toml (standard library
only):  python3 scripts/lora-vs-full.py [runs/sweeps/lora-countdown]

Per variant (mean ± sample std over seeds): the training reward over the first 10 and the last 20
steps, and held-out pass@1 / pass@8 after training. Each family's best learning rate is the one
with the highest mean last-20-step reward; the best LoRA and the best full variant are then
compared seed by seed (the same seed = the same prompts and the same base), with 95% Student-t
intervals of the paired differences.
"""
import json
import math
import pathlib
import statistics
import sys
from collections import defaultdict

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/sweeps/lora-countdown")
runs = defaultdict(dict)  # variant -> seed -> values
for run in sorted(p for p in root.iterdir() if (p / "metrics.jsonl").is_file()):
    variant, _, seed = run.name.rpartition("_seed=")
    rewards = [json.loads(l)["reward/mean"] for l in open(run / "metrics.jsonl")]
    passk = dict(json.loads((run / "eval/after.json").read_text())["pass_at_k"])
    runs[variant][int(seed)] = {
        "first10": statistics.fmean(rewards[:10]),
        "last20": statistics.fmean(rewards[-20:]),
        "pass@1": passk[1],
        "pass@8": passk[8],
    }


def ms(xs):
    return f"{statistics.fmean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.3f}"


keys = ["first10", "last20", "pass@1", "pass@8"]
print("| variant | seeds | reward, steps 1-10 | reward, last 20 steps | pass@1 after | pass@8 after |")
print("|---|---|---|---|---|---|")
for v in sorted(runs):
    cells = " | ".join(ms([r[k] for r in runs[v].values()]) for k in keys)
    print(f"| {v} | {len(runs[v])} | {cells} |")


def best(prefix):
    family = [v for v in runs if v.startswith(prefix)]
    return max(family, key=lambda v: statistics.fmean(r["last20"] for r in runs[v].values()))


full, lora = best("full-"), best("lora-")
print(f"\nbest full: {full}; best LoRA: {lora}; paired over seeds {sorted(set(runs[full]) & set(runs[lora]))}")
print("| quantity | LoRA − full, mean | 95% t interval |")
print("|---|---|---|")
for k in keys:
    d = [runs[lora][s][k] - runs[full][s][k] for s in sorted(set(runs[full]) & set(runs[lora]))]
    m = statistics.fmean(d)
    h = T975.get(len(d) - 1, 1.96) * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.nan
    print(f"| {k} | {m:+.3f} | [{m - h:+.3f}, {m + h:+.3f}] |")
