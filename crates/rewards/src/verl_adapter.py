# rlvr's adapter for a verl reward file (the `python-function` verifier): imports FILE, then
# answers rlvr's JSON-lines reward batches by calling FUNCTION the way verl's reward managers call
# `compute_score`:  FUNCTION(data_source=..., solution_str=..., ground_truth=..., extra_info=...).
# A number (or bool) is the score; a dict gives its "score" and the rest as "info".
# Usage (rlvr starts it): python3 -c "$(cat verl_adapter.py)" FILE FUNCTION
import importlib.util
import json
import math
import os
import sys

path, name = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
spec = importlib.util.spec_from_file_location("rlvr_verl_reward", path)
if spec is None or spec.loader is None:
    sys.exit(f"{path}: not a Python file")
module = importlib.util.module_from_spec(spec)
answers = sys.stdout
sys.stdout = sys.stderr  # what the reward file prints is a log, not an answer
spec.loader.exec_module(module)
function = getattr(module, name, None)
if not callable(function):
    defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
    sys.exit(f"{path} defines no function `{name}`; it defines: {', '.join(defined) or 'none'}")


def answer(item):
    out = function(
        data_source=item["data_source"],
        solution_str=item["response"],
        ground_truth=item["ground_truth"],
        extra_info=item.get("extra_info"),
    )
    if isinstance(out, dict):
        if "score" not in out:
            raise ValueError(f"{name} returned a dict without 'score': {sorted(out)}")
        info = {k: v for k, v in out.items() if k != "score"}
        return {"score": float(out["score"]), "info": info}
    score = float(out)
    if math.isnan(score):
        raise ValueError(f"{name} returned NaN")
    return score


for line in sys.stdin:
    if not line.strip():
        continue
    batch = json.loads(line)
    answers.write(json.dumps([answer(item) for item in batch], default=str) + "\n")
    answers.flush()
