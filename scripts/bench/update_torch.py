"""The update rlvr's update_scale bench measures, as a PyTorch + transformers user writes it:
a randomly initialised model of the same config (sdpa attention, gradient checkpointing on),
a log-softmax policy-gradient loss, backward, gradient clipping and one AdamW step. One child
process per response length (its own peak RSS); prints one JSON line per length.
Development-only (scripts/bench-update.sh).

Two baselines:
- plain (impl "pytorch"): full `[B, L, V]` logits, `torch.optim.AdamW` (foreach);
- strong (impl "pytorch-strong", `--strong`): what a careful user writes for long sequences —
  the decoder's last hidden states only, then the LM head + log-softmax + gather in chunks of
  CHUNK tokens, each chunk under `torch.utils.checkpoint` (its logits are recomputed in backward
  instead of kept), and `AdamW(fused=True)`;
- strong and compiled (impl "pytorch-strong-compiled", `--strong --compile`): the strong one with
  every decoder layer under `torch.compile` (inductor; the first update compiles, so STEPS >= 2
  times a compiled one).

usage: update_torch.py [--strong [--compile]] CONFIG_JSON LENGTHS [BATCH PROMPT STEPS]"""
import json
import os
import subprocess
import sys
import tempfile
import time


def peak_rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


CHUNK = 1024


def chunked_logp(model, hidden, tokens):
    """log p(tokens) from hidden states [B, T, H], CHUNK tokens of the flattened batch at a time,
    each chunk's LM head and log-softmax recomputed in backward (torch.utils.checkpoint)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    head = model.get_output_embeddings()
    h = hidden.reshape(-1, hidden.shape[-1])
    t = tokens.reshape(-1)

    def piece(hc, tc):
        logits = head(hc).float()
        return torch.log_softmax(logits, dim=-1).gather(-1, tc[:, None]).squeeze(-1)

    parts = [checkpoint(piece, h[i:i + CHUNK], t[i:i + CHUNK], use_reentrant=False)
             for i in range(0, h.shape[0], CHUNK)]
    return torch.cat(parts).view(tokens.shape)


def child(config_path, length, batch, prompt, steps, strong, compiled):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as d:
        with open(config_path) as f, open(os.path.join(d, "config.json"), "w") as g:
            g.write(f.read())
        config = AutoConfig.from_pretrained(d)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa",
                                             torch_dtype=torch.float32)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    model.train()
    if compiled:
        for layer in model.model.layers:
            layer.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0,
                            **({"fused": True} if strong else {}))
    params = sum(p.numel() for p in model.parameters())
    torch.manual_seed(1)
    vocab = config.vocab_size
    ids = torch.randint(vocab, (batch, prompt + length))
    mask = torch.ones_like(ids)
    adv = (torch.tensor([1.0, 0.0]).repeat(batch // 2 + 1)[:batch] - 0.5)[:, None]
    tokens = ids[:, prompt:]
    before = peak_rss_mib()
    secs = 0.0
    loss = None
    for _ in range(max(1, steps)):
        t0 = time.perf_counter()
        if strong:
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            logits = None
            logp = chunked_logp(model, hidden[:, prompt - 1:-1], tokens)
        else:
            logits = model(input_ids=ids, attention_mask=mask).logits
            logp = torch.log_softmax(logits[:, prompt - 1:-1].float(), dim=-1)
            logp = logp.gather(-1, tokens[..., None]).squeeze(-1)
        loss = -(logp * adv).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        del logits, logp
        secs = time.perf_counter() - t0
    total = batch * (prompt + length)
    print(json.dumps({"impl": impl_name(strong, compiled),
                      "response_tokens": length, "batch": batch,
                      "prompt": prompt, "params": params, "seconds": secs,
                      "tokens_per_s": total / secs,
                      "model_tflops_per_s": 8 * params * total / secs / 1e12,
                      "peak_rss_mib": peak_rss_mib(), "rss_before_update_mib": before,
                      "loss": float(loss), "threads": torch.get_num_threads()}))


def impl_name(strong, compiled):
    return "pytorch-strong-compiled" if compiled else "pytorch-strong" if strong else "pytorch"


def main():
    args = sys.argv[1:]
    compiled = "--compile" in args
    strong = "--strong" in args or compiled
    flags = ["--strong"] if strong else []
    flags += ["--compile"] if compiled else []
    args = [a for a in args if a not in ("--strong", "--compile")]
    if args[0] == "--child":
        _, config, length, batch, prompt, steps = args
        child(config, int(length), int(batch), int(prompt), int(steps), strong, compiled)
        return
    config, lengths = args[0], args[1]
    batch, prompt, steps = (args[2:5] + ["2", "32", "1"][len(args[2:5]):])
    for length in lengths.split(","):
        r = subprocess.run([sys.executable, __file__, "--child", config, length, batch, prompt,
                            steps] + flags, capture_output=True,
                           text=True)
        lines = r.stdout.strip().splitlines()
        if r.returncode == 0 and lines:
            print(lines[-1], flush=True)
        else:
            err = (r.stderr.strip().splitlines() or ["killed"])[-1]
            print(json.dumps({"impl": impl_name(strong, compiled),
                              "response_tokens": int(length),
                              "failed": err, "returncode": r.returncode}), flush=True)


if __name__ == "__main__":
    main()
