"""Continuous batching: a fixed number of slots; when a page ends (end token, bound, confirmed loop) the next page
takes its slot, so one long or looping page no longer holds a whole batch to the token bound.

A page taking a slot has its image encoded (`vision_stage.py`, with the other pages taking slots) and its prompt
written into the slot's cache in chunks, up to `prefill_chunk_tokens` prompt tokens a step, in the same forward as
the other slots' decode tokens (`slots.py`: a mixed step), so slots refill without stalling the decode of the
others; steps without prompt tokens replay the decode step's CUDA graph. Images are preprocessed on CPU threads
ahead of need. Greedy choice is the argmax, as in `model.generate`; sampling applies the model's generation config
the way transformers does (repetition penalty, temperature, top-k, top-p) with its own seeded generator. A page's
`seconds` is its own latency: from taking its slot to its last token.

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
from dharma_train.evaluation.prefill_chunks import PendingPrompt, next_chunks
from dharma_train.evaluation.slot_attention import SLOT_ATTENTION
from dharma_train.evaluation.slots import Chunk, SlotDecoder, text_attention, to_device
from dharma_train.evaluation.step_timer import StepTimer
from dharma_train.evaluation.vision_stage import VisionFeatures, embed_with_images, encode_pages, image_key

_CAPACITY_STEP = 256  # cache length is rounded up to this, so growing it (and recapturing the graph) stays rare
_PREPARE_THREADS = 4  # image preprocessing threads (PIL and numpy release the GIL for most of it)
_ROPE_INPUTS = ("image_grid_thw", "video_grid_thw", "mm_token_type_ids")


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
    """A step enqueued on the GPU: its tokens on their way to pinned host memory, and who held each slot."""
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
                 vision: VisionFeatures | None = None, prefill_chunk_tokens: int = 8192,
                 compile_step: bool = False):
        self.model, self.processor, self.prompt = model, processor, prompt
        self.max_new_tokens, self.slots, self.eos = max_new_tokens, slots, eos_token_id
        self.sampling, self.loop_stop, self.use_graph = sampling, loop_stop, use_graph
        self.chunk_tokens, self.compile_step = prefill_chunk_tokens, compile_step
        self.device = next(model.parameters()).device
        self.pixel_dtype = model.model.visual.dtype  # what the vision tower casts pixels to
        self.generator = None
        if sampling and seed is not None:
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.penalty = float(getattr(model.generation_config, "repetition_penalty", None) or 1.0)
        self.decoder: SlotDecoder | None = None
        self.seen: torch.Tensor | None = None
        self.pending: list[PendingPrompt] = []  # pages holding slots while their prompts are written
        self.all_slots = torch.arange(slots, device=self.device)
        pinned = self.device.type == "cuda"
        self.host_tokens = [torch.empty(slots, dtype=torch.long, pin_memory=pinned) for _ in range(2)]
        self.vision = vision if vision is not None else VisionFeatures()  # the caller's store, or one pass
        self.timer = StepTimer(self.device)
        self.stats = {"steps": 0, "mixed_steps": 0, "prefill_chunks": 0, "prefill_tokens": 0, "decode_tokens": 0,
                      "mixed_decode_tokens": 0, "graph_captures": 0}

    def prepare(self, image_path) -> tuple[tuple, dict]:
        """One page's image key and model inputs, on the CPU (runs on a preprocessing thread): the pixels already in
        the model's dtype (the tower would cast them on the GPU: half the bytes to copy, no cast there), and on CUDA
        in pinned memory, so copying them does not make the engine wait for the GPU."""
        image = Image.open(image_path).convert("RGB")
        inputs = dict(self.processor(images=[image], text=[self.prompt], return_tensors="pt"))
        inputs["pixel_values"] = inputs["pixel_values"].to(self.pixel_dtype)
        if self.device.type == "cuda":
            inputs = {key: value.pin_memory() for key, value in inputs.items()}
        return image_key(image_path), inputs

    def run(self, image_paths: list, progress: bool, bounds: list[int] | None = None,
            references: list[str | None] | None = None) -> list[PageResult]:
        """Results for every page, in the given order; bounds: a token bound per page (default: max_new_tokens);
        references: each page's expected output, which the loop stop excuses repetition by."""
        bounds = bounds or [self.max_new_tokens] * len(image_paths)
        references = references or [None] * len(image_paths)
        results: dict[int, PageResult] = {}
        active: dict[int, _Slot] = {}
        bar = tqdm(total=len(image_paths), desc="generating", unit="page", disable=not progress, leave=False)
        with ThreadPoolExecutor(max_workers=_PREPARE_THREADS) as pool, text_attention(self.model, SLOT_ATTENTION), \
                torch.inference_mode():
            upcoming = deque(pool.submit(self.prepare, path) for path in image_paths[:2 * self.slots])
            queued = deque(range(len(image_paths)))
            submitted, in_flight = len(upcoming), None
            while queued or active or self.pending or in_flight:
                held = set(active) | {prompt.slot for prompt in self.pending}
                free = [slot for slot in range(self.slots) if slot not in held]
                taken = []
                while free[len(taken):] and queued:
                    index = queued.popleft()
                    key, inputs = upcoming.popleft().result()
                    taken.append((index, bounds[index], inputs, references[index], key))
                    if submitted < len(image_paths):
                        upcoming.append(pool.submit(self.prepare, image_paths[submitted]))
                        submitted += 1
                if taken:
                    self._admit(taken, free)
                following = self._enqueue_step(active) if active or self.pending else None
                if in_flight:
                    self._take_tokens(in_flight, active, results, bar)
                in_flight = following
        bar.close()
        self._add_times()
        return [results[i] for i in range(len(image_paths))]

    def _admit(self, taken: list, free: list[int]) -> None:
        """Give new pages free slots: their images encoded together, their prompts' embeddings and rope positions."""
        started = self.timer.start()
        encoded = encode_pages(self.model, [item[2] for item in taken], [item[4] for item in taken], self.vision)
        self.timer.stop("vision", started)
        for (page, bound, inputs, reference, _), features, slot in zip(taken, encoded, free):
            extra = {key: inputs[key] for key in _ROPE_INPUTS if inputs.get(key) is not None}
            positions, deltas = self.model.model.get_rope_index(inputs["input_ids"],
                                                                attention_mask=inputs["attention_mask"], **extra)
            input_ids = to_device(inputs["input_ids"], self.device)
            self._ensure_capacity(input_ids.shape[1] + bound + 1)
            self.pending.append(PendingPrompt(
                page=page, slot=slot, bound=bound, reference=loop_text(reference) if reference else None,
                start=time.perf_counter(), input_ids=input_ids[0],
                embeds=embed_with_images(self.model, input_ids, [features])[0],
                positions=to_device(positions[:, 0].contiguous(), self.device), rope_delta=int(deltas.view(-1)[0])))

    def _enqueue_step(self, active: dict) -> _InFlight:
        """Enqueue one step for every slot (with prompt chunks while prompts wait); its tokens come back to the
        host without a wait here."""
        decoding = len(active)
        started = self.timer.start()
        if self.pending:
            chosen = self._mixed_step(active)
            self.timer.stop("mixed", started)
            self.stats["mixed_decode_tokens"] += decoding
        else:
            chosen = self._choose(self.decoder.step(), self.all_slots)
            self.timer.stop("decode", started)
            self.stats["decode_tokens"] += decoding
        self.decoder.tokens.copy_(chosen)
        self.stats["steps"] += 1
        holders = dict(active)  # the pages whose first token this step gives among them
        if self.device.type != "cuda":
            return _InFlight(tokens=chosen, done=None, holders=holders)
        host = self.host_tokens[self.stats["steps"] % 2]  # two pinned buffers: one filling, one being read
        host.copy_(chosen, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return _InFlight(tokens=host, done=done, holders=holders)

    def _mixed_step(self, active: dict) -> torch.Tensor:
        """Decode every slot and write the next prompt chunks; slots whose prompts end here get their first token."""
        planned = next_chunks(self.pending, self.chunk_tokens)
        chunks = [Chunk(slot=prompt.slot, start=start, embeds=prompt.embeds[start:start + length],
                        positions=prompt.positions[:, start:start + length]) for prompt, start, length in planned]
        decode_logits, last_logits = self.decoder.mixed_step(chunks)
        chosen = self._choose(decode_logits, self.all_slots)
        self.stats["mixed_steps"] += 1
        self.stats["prefill_chunks"] += len(chunks)
        self.stats["prefill_tokens"] += sum(length for _, _, length in planned)
        finished = []
        for row, (prompt, start, length) in enumerate(planned):
            prompt.written = start + length
            if prompt.written == prompt.length:
                finished.append((row, prompt))
        if finished:
            self._start_decoding(finished, last_logits, chosen, active)
        return chosen

    def _start_decoding(self, finished: list, last_logits: torch.Tensor, chosen: torch.Tensor, active: dict) -> None:
        """Pages whose prompts are written: their first tokens into `chosen`, their slots live from the next step."""
        rows, slots, lengths, deltas = (
            to_device(torch.tensor(values), self.device) for values in zip(
                *[(row, prompt.slot, prompt.length, prompt.rope_delta) for row, prompt in finished]))
        if self.seen is not None:  # the penalty counts the prompt's tokens, as generate does
            self.seen[slots] = False
            for _, prompt in finished:
                self.seen[prompt.slot, prompt.input_ids] = True
        first = self._choose(last_logits[rows], slots)
        chosen[slots] = first
        self.decoder.activate(slots, lengths, deltas, first)
        for _, prompt in finished:
            active[prompt.slot] = _Slot(index=prompt.page, start=prompt.start, bound=prompt.bound,
                                        reference=prompt.reference)
            self.pending.remove(prompt)

    def _take_tokens(self, step: _InFlight, active: dict, results: dict, bar) -> None:
        """A finished step's tokens, to the pages that held their slots then and still hold them."""
        if step.done is not None:
            step.done.synchronize()
        for slot, token in enumerate(step.tokens.tolist()):
            holder = step.holders.get(slot)
            if holder is not None and active.get(slot) is holder:
                self._advance(slot, token, active, results, bar)

    def _choose(self, logits: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Next token for the given slots' logits rows, after the repetition penalty when the model sets one.
        Greedy choice reads the logits as the model gives them; penalty and sampling work in fp32, as generate."""
        if self.seen is None and not self.sampling:
            return logits.argmax(dim=-1)
        logits = logits.float()
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
            self.decoder.park(slot)
            bar.update(1)

    def _ensure_capacity(self, needed: int) -> None:
        """Make the slots' caches hold `needed` positions, keeping what the slots hold (recaptures the graph)."""
        if self.decoder is not None and self.decoder.max_len >= needed:
            return
        capacity = -(-needed // _CAPACITY_STEP) * _CAPACITY_STEP
        old = self.decoder
        self.decoder = SlotDecoder(self.model, self.slots, capacity, self.use_graph, self.compile_step)
        self.stats["graph_captures"] += int(self.decoder.use_graph)
        if old is not None:
            self.decoder.adopt(old)
        if self.penalty != 1.0 and self.seen is None:
            vocabulary = self.model.lm_head.out_features
            self.seen = torch.zeros(self.slots, vocabulary, dtype=torch.bool, device=self.device)

    def _add_times(self) -> None:
        """Seconds by kind of work into the stats (prefill: the vision tower and the steps that wrote prompts), and
        which decode step ran: its attention, compiled or not, replayed from a CUDA graph or not."""
        seconds = self.timer.totals()
        for kind in ("vision", "mixed", "decode"):
            self.stats[f"{kind}_seconds"] = seconds.get(kind, 0.0)
        self.stats["prefill_seconds"] = self.stats["vision_seconds"] + self.stats["mixed_seconds"]
        if self.decoder is not None:
            self.stats.update(attention="flash" if self.decoder.flash else "masked",
                              step_compiled=self.decoder.compiled, step_graph=self.decoder.graph is not None)
