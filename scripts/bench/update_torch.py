"""The update rlvr's update_scale bench measures, as a PyTorch + transformers user writes it:
a randomly initialised model of the same config (sdpa attention, gradient checkpointing on),
full logits, a plain log-softmax policy-gradient loss, backward, gradient clipping and one AdamW
step. One child process per response length (its own peak RSS); prints one JSON line per length.
Development-only (scripts/bench-update.sh).

usage: update_torch.py CONFIG_JSON LENGTHS [BATCH PROMPT STEPS]"""
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


def child(config_path, length, batch, prompt, steps):
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
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
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
    print(json.dumps({"impl": "pytorch", "response_tokens": length, "batch": batch,
                      "prompt": prompt, "params": params, "seconds": secs,
                      "tokens_per_s": total / secs,
                      "model_tflops_per_s": 8 * params * total / secs / 1e12,
                      "peak_rss_mib": peak_rss_mib(), "rss_before_update_mib": before,
                      "loss": float(loss), "threads": torch.get_num_threads()}))


def main():
    if sys.argv[1] == "--child":
        _, _, config, length, batch, prompt, steps = sys.argv
        child(config, int(length), int(batch), int(prompt), int(steps))
        return
    config, lengths = sys.argv[1], sys.argv[2]
    batch, prompt, steps = (sys.argv[3:6] + ["2", "32", "1"][len(sys.argv[3:6]):])
    for length in lengths.split(","):
        r = subprocess.run([sys.executable, __file__, "--child", config, length, batch, prompt,
                            steps], capture_output=True, text=True)
        lines = r.stdout.strip().splitlines()
        if r.returncode == 0 and lines:
            print(lines[-1], flush=True)
        else:
            err = (r.stderr.strip().splitlines() or ["killed"])[-1]
            print(json.dumps({"impl": "pytorch", "response_tokens": int(length),
                              "failed": err, "returncode": r.returncode}), flush=True)


if __name__ == "__main__":
    main()
