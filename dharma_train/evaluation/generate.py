"""Generation over pages, bounded in new tokens, with counts of outputs that hit the bound.

Two engines. `continuous` (the default on CUDA, `evaluation/continuous.py`): a fixed number of slots decoded by
one CUDA-graph step, a finished page's slot refilled at once, and (optionally) a confirmed loop stopped early and
scored on its projection to the bound. `generate` (the default elsewhere): `model.generate` on batches of pages
in order of image size, with transformers' static (compiled) KV cache on CUDA, each batch's images preprocessed on
the CPU while the previous batch decodes. Both give the same greedy tokens (tests/evaluation/test_continuous.py).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from PIL import Image
from tqdm.auto import tqdm

from dharma_train.data.pages import Page
from dharma_train.data.prompts import prompt_messages, target_text
from dharma_train.evaluation.loop_stop import LoopStop
from dharma_train.evaluation.vision_stage import VisionFeatures
from dharma_train.models.int4_chooser import choose_int4_backends


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    hit_token_limit: bool
    seconds: float  # the page's latency: its batch's wall time (generate), its own time in a slot (continuous)
    stopped_early: bool = False  # a confirmed loop stopped before the bound; text and new_tokens are its projection
    decoded_tokens: int | None = None  # tokens really decoded, when that differs from new_tokens

    @property
    def tokens_decoded(self) -> int:
        """What the GPU really produced for this page: the count throughput is made of."""
        return self.new_tokens if self.decoded_tokens is None else self.decoded_tokens


def resolve_cache(cache: str, device: torch.device) -> str:
    """`auto`: a static (compiled) cache on CUDA, the dynamic cache elsewhere."""
    if cache == "auto":
        return "static" if device.type == "cuda" else "dynamic"
    return cache


def resolve_engine(engine: str, device: torch.device) -> str:
    """`auto`: continuous batching on CUDA, `model.generate` elsewhere (the CPU path is unchanged)."""
    if engine == "auto":
        return "continuous" if device.type == "cuda" else "generate"
    return engine


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
             cache: str = "auto", progress: bool = True, sampling: dict | None = None, engine: str = "auto",
             loop_stop: LoopStop | None = None, seed: int | None = None, graphs: bool = True,
             vision: VisionFeatures | None = None, prefill_chunk_tokens: int = 8192,
             compile_step: bool = False) -> tuple[list[Generation], float]:
    """Answers for pages in their given order, and the total wall time spent generating them.

    batch_size is the number of slots for the continuous engine; loop_stop (continuous only) stops confirmed
    loops early; seed seeds the continuous engine's sampling (the `generate` engine uses torch's global RNG);
    vision (continuous only) keeps the pages' image features for another pass with the same model;
    prefill_chunk_tokens (continuous only) bounds the prompt tokens a step writes beside the decode tokens (0: every
    waiting prompt at once); compile_step (continuous only) fuses the decode step with torch.compile."""
    tokenizer = processor.tokenizer
    prompt = tokenizer.apply_chat_template(prompt_messages(task), add_generation_prompt=True, tokenize=False)
    device = next(model.parameters()).device
    model.eval()
    choose_int4_backends(model, min(batch_size, max(len(pages), 1)))  # int4 layers: kernels for these decode rows
    sizes = {page.id: _pixels(page) for page in pages}
    order = sorted(range(len(pages)), key=lambda i: sizes[pages[i].id])
    if resolve_engine(engine, device) == "continuous":
        return _generate_continuous(model, processor, prompt, task, pages, order, max_new_tokens, batch_size,
                                    progress, sampling, loop_stop, seed, graphs, vision, prefill_chunk_tokens,
                                    compile_step)
    cache = resolve_cache(cache, device)
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


def _generate_continuous(model, processor, prompt: str, task: str, pages: list[Page], order: list[int],
                         max_new_tokens: int, slots: int, progress: bool, sampling: dict | None,
                         loop_stop: LoopStop | None, seed: int | None, graphs: bool,
                         vision: VisionFeatures | None, prefill_chunk_tokens: int,
                         compile_step: bool) -> tuple[list[Generation], float]:
    """The continuous engine over pages in size order; results back in the given order."""
    from dharma_train.evaluation.continuous import ContinuousGenerator

    tokenizer = processor.tokenizer
    device = next(model.parameters()).device
    if sampling:
        sampling = {"top_k": getattr(model.generation_config, "top_k", None), **sampling}
    engine = ContinuousGenerator(model, processor, prompt, max_new_tokens, min(slots, max(len(pages), 1)),
                                 tokenizer.eos_token_id, sampling, loop_stop, use_graph=graphs, seed=seed,
                                 vision=vision, prefill_chunk_tokens=prefill_chunk_tokens,
                                 compile_step=compile_step)
    start = time.perf_counter()
    references = [target_text(pages[i].answer, task) for i in order]
    results = engine.run([pages[i].image for i in order], progress, references=references) if pages else []
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    generations: dict[int, Generation] = {}
    for index, result in zip(order, results):
        generations[index] = Generation(
            text=tokenizer.decode(result.tokens, skip_special_tokens=True), new_tokens=len(result.tokens),
            hit_token_limit=not result.ended and len(result.tokens) >= max_new_tokens, seconds=result.seconds,
            stopped_early=result.stopped_early,
            decoded_tokens=result.decoded if result.decoded != len(result.tokens) else None)
    return [generations[i] for i in range(len(pages))], seconds


def _pixels(page: Page) -> int:
    """Image area from the file header alone, to order pages without decoding them."""
    with Image.open(page.image) as image:
        return image.width * image.height


def generate_across_ranks(model, processor, pages: list[Page], task: str, max_new_tokens: int, batch_size: int,
                          cache: str = "auto", progress: bool = True, sampling: dict | None = None,
                          engine: str = "auto", loop_stop: LoopStop | None = None, seed: int | None = None,
                          vision: VisionFeatures | None = None, prefill_chunk_tokens: int = 8192,
                          compile_step: bool = False) -> tuple[list[Generation], float]:
    """`generate` with the pages split over the run's processes: every process gets every answer, in page order,
    and the slowest process's wall time. With one process it is `generate`."""
    from dharma_train import distributed

    generations, seconds = generate(model, processor, distributed.shard(pages), task, max_new_tokens, batch_size,
                                    cache=cache, progress=progress and distributed.is_main(), sampling=sampling,
                                    engine=engine, loop_stop=loop_stop, seed=seed, vision=vision,
                                    prefill_chunk_tokens=prefill_chunk_tokens, compile_step=compile_step)
    return distributed.gather(generations), max(distributed.gather([seconds]))
