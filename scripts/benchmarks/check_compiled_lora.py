"""Eager against compiled LoRA on the tiny model, on the CPU: same init, same padded batches, AdamW, the SFT path's
padding-free packing and TRL's fused LM head; prints the loss of each step for both (docs/performance.md).

    python -m scripts.benchmarks.check_compiled_lora             # fp32
    python -m scripts.benchmarks.check_compiled_lora --bf16      # bf16 weights under bf16 autocast, as on a GPU

On the H200 compiled LoRA's losses left eager's by 0.3 % from the second step; this is the CPU half of that check.
"""

from __future__ import annotations

import argparse
import copy
from contextlib import nullcontext

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bf16", action="store_true", help="bf16 weights under bf16 autocast")
    args = parser.parse_args()

    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText
    from trl.trainer.utils import add_fused_lm_head

    from dharma_train import tiny_model
    from dharma_train.training.config import LoraSettings
    from dharma_train.training.model_setup import lora_config
    from dharma_train.training.performance.compiled_layers import compile_layers
    from dharma_train.training.performance.packing import use_padding_free

    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    base = AutoModelForImageTextToText.from_pretrained(tiny_model().path, dtype=dtype)
    use_padding_free(base)
    add_fused_lm_head(base)
    vocab = base.config.text_config.vocab_size
    batches = []
    for index in range(4):
        ids = torch.randint(10, vocab - 100, (3, 60 + 7 * index))
        mask = torch.ones_like(ids)
        mask[0, : 20 + index] = 0  # left padding, as TRL's collator pads
        mask[2, :7] = 0
        batches.append((ids, mask))
    for mode in ("eager", "compiled"):
        torch.manual_seed(1)
        model = get_peft_model(copy.deepcopy(base), lora_config(LoraSettings())).train()
        if mode == "compiled":
            compile_layers(model)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        losses = []
        for ids, mask in batches:
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else nullcontext()
            with autocast:
                loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100),
                             use_cache=False, fused_lm_head=True).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(round(float(loss.detach()), 6))
        print(mode, losses, flush=True)


if __name__ == "__main__":
    main()
