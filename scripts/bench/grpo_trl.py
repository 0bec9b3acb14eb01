"""TRL's GRPOTrainer on the work of rlvr's whole-step GRPO benchmark (scripts/bench-grpo.sh): a
randomly initialised model of the given config, the prompts of PROMPTS_JSONL, 8 samples per
prompt, 2 prompts per step, up to 64 new tokens at temperature 1, a has-a-digit reward, PPO-clip
GRPO without a reference model (beta = 0), one optimizer step per batch (num_iterations = 1,
so TRL skips the old-log-prob pass), gradient checkpointing, f32 on the CPU. The tokenizer is
rlvr's character tokenizer over the same alphabet (ids 0 pad, 1 end of sequence, then the
alphabet's characters; the other ids decode to letters only, so they never count as digits).
Prints one JSON line with every step's seconds, the seconds of its generation (TRL's
`_generate`, timed by wrapping it) and the process's peak RSS. Development-only.

With a fifth argument `no-checkpointing`, TRL runs without gradient checkpointing (every
activation kept: more memory, no recomputation) and reports itself as "trl-no-checkpointing".

usage: grpo_trl.py CONFIG_JSON PROMPTS_JSONL STEPS ALPHABET [no-checkpointing]"""
import json
import os
import sys
import tempfile
import time


def char_tokenizer(vocab_size, alphabet):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    def letters(i):
        s = ""
        while True:
            s = chr(ord("a") + i % 26) + s
            i //= 26
            if i == 0:
                return f"<u{s}>"  # never "<pad>" or "<eos>"

    vocab = {"<pad>": 0, "<eos>": 1}
    for j, c in enumerate(alphabet):
        vocab[c] = j + 2
    for i in range(len(vocab), vocab_size):
        vocab[letters(i)] = i
    assert len(vocab) == vocab_size, "token names collide"
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def main():
    config_path, prompts_path, steps, alphabet = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    checkpointing = sys.argv[5:] != ["no-checkpointing"]
    if sys.argv[5:] and checkpointing:
        sys.exit(f"grpo_trl.py: unknown argument {sys.argv[5]!r} (valid: no-checkpointing)")
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    with tempfile.TemporaryDirectory() as d:
        with open(config_path) as f, open(os.path.join(d, "config.json"), "w") as g:
            g.write(f.read())
        config = AutoConfig.from_pretrained(d)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa",
                                             torch_dtype=torch.float32)
    tok = char_tokenizer(config.vocab_size, alphabet)
    model.config.pad_token_id = 0
    model.config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 1
    prompts = [json.loads(l)["prompt"] for l in open(prompts_path) if l.strip()]
    data = Dataset.from_dict({"prompt": prompts})

    def has_digit(completions, **kwargs):
        return [1.0 if any(c.isdigit() for c in text) else 0.0 for text in completions]

    times = []
    # Generation's share of each step: TRL's `_generate` timed from the outside.
    generate_times = []
    generate = GRPOTrainer._generate

    def timed_generate(self, *args, **kwargs):
        t = time.perf_counter()
        out = generate(self, *args, **kwargs)
        generate_times.append(time.perf_counter() - t)
        return out

    GRPOTrainer._generate = timed_generate

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out, per_device_train_batch_size=16, gradient_accumulation_steps=1,
            num_generations=8, max_completion_length=64, temperature=1.0, top_p=1.0,
            learning_rate=1e-6, beta=0.0, num_iterations=1, max_grad_norm=1.0,
            gradient_checkpointing=checkpointing, bf16=False, use_cpu=True, logging_steps=1,
            max_steps=steps, report_to=[], save_strategy="no", seed=0,
            dataloader_num_workers=0)
        trainer = GRPOTrainer(model=model, reward_funcs=has_digit, args=args,
                              train_dataset=data, processing_class=tok, callbacks=[Clock()])
        trainer.train()
        logs = trainer.state.log_history
    import resource
    import trl
    lengths = [l["completions/mean_length"] for l in logs if "completions/mean_length" in l]
    print(json.dumps({"impl": "trl" if checkpointing else "trl-no-checkpointing",
                      "trl_version": trl.__version__, "step_seconds": times,
                      "generate_seconds": generate_times, "mean_length": lengths,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
