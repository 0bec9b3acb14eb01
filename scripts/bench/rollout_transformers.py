"""transformers' generate on the same weights, prompts and sampling as rollout_bench (rlvr):
P prompts x N samples (num_return_sequences), up to T new tokens, temperature 1, the same stop
set. Prints one JSON line like rollout_bench. Development-only (scripts/bench-rollout.sh).
With --static: transformers' static cache (`cache_implementation="static"`, preallocated like
rlvr's; impl "transformers-static"). The workload runs once untimed, then timed.

usage: rollout_transformers.py [--static] OUT SAMPLES NEW_TOKENS"""
import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM

args = [a for a in sys.argv[1:] if a != "--static"]
static = "--static" in sys.argv[1:]
out, samples, new_tokens = args[0], int(args[1]), int(args[2])
model = AutoModelForCausalLM.from_pretrained(f"{out}/model", attn_implementation="sdpa",
                                             torch_dtype=torch.float32).eval()
rows = json.load(open(f"{out}/prompts.json"))
vocab = model.config.vocab_size
stop = [i + 1 for i in range(0, vocab, 128)]
width = max(len(r) for r in rows)
ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])


def run():
    torch.manual_seed(0)
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                              temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                              num_return_sequences=samples, eos_token_id=stop, pad_token_id=0,
                              **({"cache_implementation": "static"} if static else {}))


run()  # the whole workload once, untimed (as rlvr and vLLM are measured)
t0 = time.perf_counter()
g = run()
secs = time.perf_counter() - t0
resp = g[:, width:]
stop_t = torch.tensor(stop)
is_stop = torch.isin(resp, stop_t)
# Tokens up to and including the first stop token (transformers pads after it).
first = torch.where(is_stop.any(1), is_stop.int().argmax(1) + 1, torch.full((resp.shape[0],), resp.shape[1]))
tokens = int(first.sum())
print(json.dumps({"impl": "transformers-static" if static else "transformers", "rows": resp.shape[0], "generated_tokens": tokens,
                  "mean_length": tokens / resp.shape[0], "longest": int(first.max()),
                  "seconds": secs, "tokens_per_s": tokens / secs,
                  "threads": torch.get_num_threads()}))
