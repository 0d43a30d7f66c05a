"""Batched greedy generation over pages, bounded in new tokens, with counts of outputs that hit the bound."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from PIL import Image
from tqdm.auto import tqdm

from dharma_train.data.pages import Page
from dharma_train.data.prompts import prompt_messages


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    hit_token_limit: bool


def generate(model, processor, pages: list[Page], task: str, max_new_tokens: int, batch_size: int,
             progress: bool = True) -> tuple[list[Generation], float]:
    """Answers for pages in their order, and the wall time spent generating them."""
    tokenizer = processor.tokenizer
    prompt = tokenizer.apply_chat_template(prompt_messages(task), add_generation_prompt=True, tokenize=False)
    device = next(model.parameters()).device
    results: list[Generation] = []
    model.eval()
    start = time.perf_counter()
    bar = tqdm(total=len(pages), desc="generating", unit="page", disable=not progress, leave=False)
    for offset in range(0, len(pages), batch_size):
        batch = pages[offset:offset + batch_size]
        images = [Image.open(page.image).convert("RGB") for page in batch]
        inputs = processor(images=images, text=[prompt] * len(batch), padding=True, return_tensors="pt").to(device)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new_ids = output[:, inputs["input_ids"].shape[1]:]
        for row in new_ids:
            length = int((row != tokenizer.pad_token_id).sum())
            ended = bool((row == tokenizer.eos_token_id).any())
            results.append(Generation(text=tokenizer.decode(row, skip_special_tokens=True),
                                      new_tokens=length, hit_token_limit=not ended and length >= max_new_tokens))
        bar.update(len(batch))
    bar.close()
    return results, time.perf_counter() - start
