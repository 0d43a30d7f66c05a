"""Continuous batching: a fixed number of slots; when a page ends (end token, bound, confirmed loop) the next page
takes its slot, so one long or looping page no longer holds a whole batch to the token bound.

Pages are prefilled one at a time, or several at once when their prompts have the same length (pages come
ordered by image size, so neighbours usually do); images are preprocessed on a CPU thread ahead of need. Greedy
choice is the argmax, as in `model.generate`; sampling applies the model's generation config the way transformers
does (repetition penalty, temperature, top-k, top-p) with its own seeded generator. A page's `seconds` is its own
latency: from its prefill to its last token.

The loop never waits for the GPU between steps: step t+1 is enqueued before step t's tokens are read (they come
back through pinned memory), so the host's bookkeeping and loop checks run while the GPU decodes. A page that
ended at step t gets one wasted token at step t+1, which is dropped.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from PIL import Image
from tqdm.auto import tqdm

from dharma_train.evaluation.loop_stop import LoopStop, loop_period, loop_text, project_to_bound
from dharma_train.evaluation.slots import SLOT_ATTENTION, SlotDecoder, text_attention
from dharma_train.evaluation.vision_stage import VisionFeatures, encode_pages, image_key

_CAPACITY_STEP = 256  # cache length is rounded up to this, so growing it (and recapturing the graph) stays rare
_PREPARE_THREADS = 4  # image preprocessing threads (PIL and numpy release the GIL for most of it)


@dataclass
class PageResult:
    tokens: list[int]
    ended: bool  # the end token came
    stopped_early: bool  # a confirmed loop: `tokens` holds its projection to the bound
    decoded: int  # tokens really decoded
    seconds: float


@dataclass
class _Slot:
    index: int
    start: float
    bound: int
    reference: str | None = None  # the page's expected output (loop_text): its own repetition is no loop
    tokens: list[int] = field(default_factory=list)


@dataclass
class _InFlight:
    """A decode step enqueued on the GPU: its tokens on their way to pinned host memory, and who held each slot."""
    tokens: torch.Tensor
    done: torch.cuda.Event | None
    holders: dict


def sample_next(logits: torch.Tensor, sampling: dict | None, generator: torch.Generator | None) -> torch.Tensor:
    """Greedy argmax, or a draw after temperature, top-k and top-p, in transformers' order and semantics."""
    if not sampling:
        return logits.argmax(dim=-1)
    logits = logits / sampling.get("temperature", 1.0)
    top_k = sampling.get("top_k") or 0
    if 0 < top_k < logits.shape[-1]:
        threshold = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    top_p = sampling.get("top_p", 1.0)
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=False, dim=-1)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= 1 - top_p
        remove[:, -1] = False  # keep at least one token
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).view(-1)


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty: logits of tokens already in the prompt or answer divided (or multiplied)."""
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


class ContinuousGenerator:
    """Pages through slots until all are done; one instance per call of `generate_continuous`."""

    def __init__(self, model, processor, prompt: str, max_new_tokens: int, slots: int, eos_token_id: int,
                 sampling: dict | None, loop_stop: LoopStop | None, use_graph: bool, seed: int | None,
                 grouped_attention: bool, vision: VisionFeatures | None = None):
        self.model, self.processor, self.prompt = model, processor, prompt
        self.max_new_tokens, self.slots, self.eos = max_new_tokens, slots, eos_token_id
        self.sampling, self.loop_stop, self.use_graph = sampling, loop_stop, use_graph
        self.attention = SLOT_ATTENTION if grouped_attention else None
        self.device = next(model.parameters()).device
        self.generator = None
        if sampling and seed is not None:
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.penalty = float(getattr(model.generation_config, "repetition_penalty", None) or 1.0)
        self.decoder: SlotDecoder | None = None
        self.seen: torch.Tensor | None = None
        self.all_slots = torch.arange(slots, device=self.device)
        pinned = self.device.type == "cuda"
        self.host_tokens = [torch.empty(slots, dtype=torch.long, pin_memory=pinned) for _ in range(2)]
        self.vision = vision if vision is not None else VisionFeatures()  # the caller's store, or one pass
        self.stats = {"prefill_seconds": 0.0, "vision_seconds": 0.0, "prefills": 0, "steps": 0, "graph_captures": 0}

    def prepare(self, image_path) -> tuple[tuple, dict]:
        """One page's image key and model inputs, on the CPU (runs on the preprocessing thread)."""
        image = Image.open(image_path).convert("RGB")
        return image_key(image_path), dict(self.processor(images=[image], text=[self.prompt], return_tensors="pt"))

    def run(self, image_paths: list, progress: bool, bounds: list[int] | None = None,
            references: list[str | None] | None = None) -> list[PageResult]:
        """Results for every page, in the given order; bounds: a token bound per page (default: max_new_tokens);
        references: each page's expected output, which the loop stop excuses repetition by."""
        bounds = bounds or [self.max_new_tokens] * len(image_paths)
        references = references or [None] * len(image_paths)
        results: dict[int, PageResult] = {}
        active: dict[int, _Slot] = {}
        bar = tqdm(total=len(image_paths), desc="generating", unit="page", disable=not progress, leave=False)
        with ThreadPoolExecutor(max_workers=_PREPARE_THREADS) as pool, text_attention(self.model, self.attention), \
                torch.inference_mode():
            upcoming = deque(pool.submit(self.prepare, path) for path in image_paths[:2 * self.slots])
            queued = deque(range(len(image_paths)))
            submitted, in_flight = len(upcoming), None
            while queued or active or in_flight:
                free = [slot for slot in range(self.slots) if slot not in active]
                taken = []
                while free[len(taken):] and queued:
                    index = queued.popleft()
                    key, inputs = upcoming.popleft().result()
                    taken.append((index, bounds[index], inputs, references[index], key))
                    if submitted < len(image_paths):
                        upcoming.append(pool.submit(self.prepare, image_paths[submitted]))
                        submitted += 1
                if taken:
                    self._fill(taken, free, active, results, bar)
                following = self._enqueue_step(active) if active else None
                if in_flight:
                    self._take_tokens(in_flight, active, results, bar)
                in_flight = following
        bar.close()
        return [results[i] for i in range(len(image_paths))]

    def _fill(self, taken: list, free: list[int], active: dict, results: dict, bar) -> None:
        """Prefill new pages into free slots, same-length prompts together, and take their first tokens."""
        started = time.perf_counter()
        encoded = encode_pages(self.model, [item[2] for item in taken], [item[4] for item in taken], self.vision)
        features = {item[0]: page_features for item, page_features in zip(taken, encoded)}
        self.stats["vision_seconds"] += time.perf_counter() - started
        groups: list[list] = []
        for item in taken:
            if groups and groups[-1][0][2]["input_ids"].shape[1] == item[2]["input_ids"].shape[1]:
                groups[-1].append(item)
            else:
                groups.append([item])
        free = list(free)  # a slot freed by a page that ends at its first token is refilled on the next round
        for group in groups:
            start = time.perf_counter()
            length = group[0][2]["input_ids"].shape[1]
            self._ensure_capacity(length + max(item[1] for item in group) + 1)
            slots = [free.pop(0) for _ in group]
            inputs = {key: torch.cat([item[2][key] for item in group]).to(self.device) for key in group[0][2]
                      if key != "pixel_values"}  # the images are encoded already
            logits = self.decoder.prefill(inputs, slots, [features[item[0]] for item in group])
            index = torch.tensor(slots, device=self.device)
            if self.seen is not None:
                self.seen[index] = False
                self.seen[index[:, None].expand_as(inputs["input_ids"]), inputs["input_ids"]] = True
            first = self._choose(logits, index)
            self.decoder.tokens[index] = first
            for slot, (page, bound, _, reference, _), token in zip(slots, group, first.tolist()):
                active[slot] = _Slot(index=page, start=start, bound=bound,
                                     reference=loop_text(reference) if reference else None)
                self._advance(slot, token, active, results, bar)
        self.stats["prefill_seconds"] += time.perf_counter() - started
        self.stats["prefills"] += len(groups)

    def _enqueue_step(self, active: dict) -> _InFlight:
        """Enqueue one decode step for every slot; its tokens come back to the host without a wait here."""
        logits = self.decoder.step()
        chosen = self._choose(logits, self.all_slots)
        self.decoder.tokens.copy_(chosen)
        self.stats["steps"] += 1
        if self.device.type != "cuda":
            return _InFlight(tokens=chosen, done=None, holders=dict(active))
        host = self.host_tokens[self.stats["steps"] % 2]  # two pinned buffers: one filling, one being read
        host.copy_(chosen, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return _InFlight(tokens=host, done=done, holders=dict(active))

    def _take_tokens(self, step: _InFlight, active: dict, results: dict, bar) -> None:
        """A finished step's tokens, to the pages that held their slots then and still hold them."""
        if step.done is not None:
            step.done.synchronize()
        for slot, token in enumerate(step.tokens.tolist()):
            holder = step.holders.get(slot)
            if holder is not None and active.get(slot) is holder:
                self._advance(slot, token, active, results, bar)

    def _choose(self, logits: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Next token for the given slots' logits rows, after the repetition penalty when the model sets one."""
        if self.seen is not None:
            logits = penalize_repeats(logits, self.seen[slots], self.penalty)
        chosen = sample_next(logits, self.sampling, self.generator)
        if self.seen is not None:
            self.seen[slots, chosen] = True
        return chosen

    def _advance(self, slot: int, token: int, active: dict, results: dict, bar) -> None:
        """Append a slot's new token and free the slot when its page is done."""
        state = active[slot]
        state.tokens.append(token)
        ended = token == self.eos
        stopped, tokens = False, state.tokens
        rule = self.loop_stop
        if not ended and len(tokens) < state.bound and rule and len(tokens) % rule.check_every == 0:
            period = loop_period(tokens, rule, self.processor.tokenizer.decode, state.reference)
            if period:
                stopped, tokens = True, project_to_bound(tokens, period, state.bound)
        if ended or stopped or len(tokens) >= state.bound:
            results[state.index] = PageResult(tokens=tokens, ended=ended, stopped_early=stopped,
                                              decoded=len(state.tokens), seconds=time.perf_counter() - state.start)
            del active[slot]
            self.decoder.cache.write_at[slot] = 0  # an idle slot keeps stepping; keep its writes inside the cache
            bar.update(1)

    def _ensure_capacity(self, needed: int) -> None:
        """Make the slots' caches hold `needed` positions, keeping what active slots hold (recaptures the graph)."""
        if self.decoder is not None and self.decoder.max_len >= needed:
            return
        capacity = -(-needed // _CAPACITY_STEP) * _CAPACITY_STEP
        old = self.decoder
        self.decoder = SlotDecoder(self.model, self.slots, capacity, self.use_graph)
        self.stats["graph_captures"] += int(self.decoder.use_graph)
        if old is not None:
            self.decoder.adopt(old)
        if self.penalty != 1.0 and self.seen is None:
            vocabulary = self.model.lm_head.out_features
            self.seen = torch.zeros(self.slots, vocabulary, dtype=torch.bool, device=self.device)
