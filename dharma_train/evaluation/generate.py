"""Batched greedy generation over pages, bounded in new tokens, with counts of outputs that hit the bound.

On a GPU the default is a static KV cache, which makes transformers compile the decode step (CUDA graphs):
decoding a 3B model at small batch is bound by per-step launch overhead, not by the GPU. Pages are batched in
order of image size, so a batch pads little and its shapes repeat, and each batch's images are preprocessed on
the CPU while the previous batch decodes.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
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
    seconds: float  # wall time of the batch the page was generated in: its latency


def resolve_cache(cache: str, device: torch.device) -> str:
    """`auto`: a static (compiled) cache on CUDA, the dynamic cache elsewhere."""
    if cache == "auto":
        return "static" if device.type == "cuda" else "dynamic"
    return cache


def decode(model, inputs: dict, max_new_tokens: int, eos_token_id: int, pad_token_id: int,
           cache: str = "dynamic", sampling: dict | None = None) -> torch.Tensor:
    """New tokens for one prepared batch: greedy, or sampled with `sampling` (temperature, top_p)."""
    options = {"cache_implementation": "static"} if cache == "static" else {}
    options.update({"do_sample": True, **sampling} if sampling else {"do_sample": False})
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
                                pad_token_id=pad_token_id, **options)
    return output[:, inputs["input_ids"].shape[1]:]


def generate(model, processor, pages: list[Page], task: str, max_new_tokens: int, batch_size: int,
             cache: str = "auto", progress: bool = True, sampling: dict | None = None,
             ) -> tuple[list[Generation], float]:
    """Answers for pages in their given order, and the total wall time spent generating them."""
    tokenizer = processor.tokenizer
    prompt = tokenizer.apply_chat_template(prompt_messages(task), add_generation_prompt=True, tokenize=False)
    device = next(model.parameters()).device
    cache = resolve_cache(cache, device)
    model.eval()
    sizes = {page.id: _pixels(page) for page in pages}
    order = sorted(range(len(pages)), key=lambda i: sizes[pages[i].id])
    batches = [order[offset:offset + batch_size] for offset in range(0, len(order), batch_size)]

    def prepare(indices: list[int]):
        images = [Image.open(pages[i].image).convert("RGB") for i in indices]
        return processor(images=images, text=[prompt] * len(indices), padding=True, return_tensors="pt")

    results: dict[int, Generation] = {}
    start = time.perf_counter()
    bar = tqdm(total=len(pages), desc="generating", unit="page", disable=not progress, leave=False)
    # Image preprocessing runs on the CPU one batch ahead, so the GPU never waits for PIL.
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(prepare, batches[0]) if batches else None
        for number, indices in enumerate(batches):
            batch_start = time.perf_counter()
            inputs = upcoming.result().to(device)
            if number + 1 < len(batches):
                upcoming = pool.submit(prepare, batches[number + 1])
            new_ids = decode(model, inputs, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id, cache,
                             sampling)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - batch_start
            for index, row in zip(indices, new_ids):
                ended = bool((row == tokenizer.eos_token_id).any())
                length = int((row != tokenizer.pad_token_id).sum())
                results[index] = Generation(text=tokenizer.decode(row, skip_special_tokens=True), new_tokens=length,
                                            hit_token_limit=not ended and length >= max_new_tokens, seconds=seconds)
            bar.update(len(indices))
    bar.close()
    return [results[i] for i in range(len(pages))], time.perf_counter() - start


def _pixels(page: Page) -> int:
    """Image area from the file header alone, to order pages without decoding them."""
    with Image.open(page.image) as image:
        return image.width * image.height


def generate_across_ranks(model, processor, pages: list[Page], task: str, max_new_tokens: int, batch_size: int,
                          cache: str = "auto", progress: bool = True, sampling: dict | None = None,
                          ) -> tuple[list[Generation], float]:
    """`generate` with the pages split over the run's processes: every process gets every answer, in page order,
    and the slowest process's wall time. With one process it is `generate`."""
    from dharma_train import distributed

    generations, seconds = generate(model, processor, distributed.shard(pages), task, max_new_tokens, batch_size,
                                    cache=cache, progress=progress and distributed.is_main(), sampling=sampling)
    return distributed.gather(generations), max(distributed.gather([seconds]))
