"""Development-only: does an rlvr-trained LoRA adapter load in Hugging Face PEFT with no warnings,
give the logits of rlvr's merged export, and merge (PEFT's merge_and_unload) to rlvr's merged
weights?  Usage: check.py BASE_DIR ADAPTER_DIR MERGED_DIR PEFT_MADE_ADAPTER_DIR

Warnings are counted beyond those PEFT emits loading an adapter it wrote itself onto the same base
(PEFT_MADE_ADAPTER_DIR): library deprecation notices are not about the files.
"""
import logging
import sys
import warnings

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

base_dir, adapter_dir, merged_dir, peft_made = sys.argv[1:5]
records = []


class Keep(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            records.append(f"{record.name}: {record.getMessage()}")


for name in ["transformers", "peft"]:
    logging.getLogger(name).addHandler(Keep())

load = dict(dtype=torch.float32, attn_implementation="eager")


def load_adapter(path):
    """The PEFT model of `path` over a fresh base, and the warnings loading it raised."""
    records.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        base = AutoModelForCausalLM.from_pretrained(base_dir, **load)
        model = PeftModel.from_pretrained(base, path)
    return model, records + [f"{w.category.__name__}: {w.message}" for w in caught]


_, baseline = load_adapter(peft_made)
peft, ours_warned = load_adapter(adapter_dir)
problems = [w for w in ours_warned if w not in baseline]
peft.eval()
merged = AutoModelForCausalLM.from_pretrained(merged_dir, **load).eval()

torch.manual_seed(0)
ids = torch.randint(0, peft.get_base_model().config.vocab_size, (3, 24))
mask = torch.ones_like(ids)
mask[1, :5] = 0  # one left-padded row
pos = (mask.cumsum(-1) - 1).clamp(min=0)
with torch.no_grad():
    a = peft(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    b = merged(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    real = mask.bool()
    logit_diff = (a - b).abs()[real].max().item()
    plain = AutoModelForCausalLM.from_pretrained(base_dir, **load).eval()
    effect = (a - plain(input_ids=ids, attention_mask=mask, position_ids=pos).logits).abs()[real].max().item()
    unmerged = peft.merge_and_unload().state_dict()
ours = load_file(f"{merged_dir}/model.safetensors")
weight_diff = max((unmerged[k].float() - v).abs().max().item() for k, v in ours.items())
missing = sorted(set(unmerged) - set(ours) - {"lm_head.weight"})
print(f"adapter {adapter_dir}")
print(f"  PEFT load warnings beyond those for a PEFT-made adapter: {len(problems)}"
      + "".join(f"\n    {p}" for p in problems)
      + f" (both: {len(baseline)})")
print(f"  max |PEFT logits - transformers(rlvr merged) logits|: {logit_diff:.3e}")
print(f"  max |PEFT merge_and_unload - rlvr merged| over {len(ours)} tensors: {weight_diff:.3e}")
print(f"  max |adapter's effect on the logits|: {effect:.3e}")
ok = not problems and logit_diff < 1e-4 and weight_diff < 1e-6 and not missing and effect > 1e-3
print("  OK" if ok else f"  FAILED (missing tensors: {missing})")
sys.exit(0 if ok else 1)
