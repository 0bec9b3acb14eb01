"""vLLM's CPU build on the rollout benchmark's work (scripts/bench-rollout.sh): the model and
prompts rlvr's `rollout_bench` wrote to OUT, N samples each, up to T new tokens, temperature 1,
the same stop set (every 128th id from 1), offline `LLM.generate` over all prompts at once (vLLM's
best case: no server in between). The engine is seeded (its per-request seed fails on CPU).
Development-only; runs in .tools/vllm-venv (scripts/vllm-check.sh installs it).

usage: rollout_vllm.py OUT SAMPLES NEW_TOKENS eager|compiled
Prints one JSON line: impl (vllm-eager / vllm-compiled), generated_tokens, seconds, tokens_per_s,
threads. Start-up, compilation and one warm-up pass over the whole workload are not timed."""
import json
import os
import sys
import time


def main():
    out, samples, new_tokens, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if mode not in ("eager", "compiled"):
        sys.exit(f"rollout_vllm.py: mode must be eager or compiled, got {mode!r}")
    # vLLM's CPU worker otherwise takes nearly all free memory for its KV cache (20 of this
    # machine's 23.5 GiB) and dies without a message when anything else holds a few GiB; 4 GiB
    # holds every row of both benchmark sizes many times over.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    rows = json.load(open(f"{out}/prompts.json"))
    vocab = json.load(open(f"{out}/model/config.json"))["vocab_size"]
    stop = [i + 1 for i in range(0, vocab, 128)]
    longest = max(len(r) for r in rows) + new_tokens
    llm = LLM(model=f"{out}/model", skip_tokenizer_init=True, dtype="float32", seed=0,
              enforce_eager=(mode == "eager"), max_model_len=max(512, longest))
    params = SamplingParams(n=samples, temperature=1.0, max_tokens=new_tokens,
                            stop_token_ids=stop, ignore_eos=True, detokenize=False)
    prompts = [TokensPrompt(prompt_token_ids=r) for r in rows]
    llm.generate(prompts, params, use_tqdm=False)  # the whole workload once, untimed
    t0 = time.perf_counter()
    results = llm.generate(prompts, params, use_tqdm=False)
    secs = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for r in results for c in r.outputs)
    print(json.dumps({"impl": f"vllm-{mode}", "generated_tokens": tokens, "seconds": secs,
                      "tokens_per_s": tokens / secs,
                      "threads": int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count())}),
          flush=True)


if __name__ == "__main__":
    main()
