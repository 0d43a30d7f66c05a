"""The steps of the continuous-batching engine: a fixed number of slots, each with its own rows of a KV cache.

Every slot holds one page at its own position. A decode step feeds each slot's last token, writes its key and value
at the slot's own position and attends over the slot's live rows (`slot_attention.py`), so pages of different
lengths and ages decode together. A live slot's position moves on by one a step; a parked slot (free, or still
taking its prompt) writes at the cache's last position, which no page reaches, and its token is dropped. The decode
step's shapes never change, so on CUDA it is captured once in a CUDA graph and replayed; `compile_step` first
fuses its small kernels (norms, rope, activations, casts) with torch.compile.

A mixed step is the decode step plus prompt chunks: consecutive prompt tokens of pages taking slots, their image
features already in their embeddings, written into their slots' rows in the same forward (one read of the
weights for both). A page's prompt can take several mixed steps; the step that writes its last chunk gives its
first token. Mixed steps change shape from step to step and run eagerly.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from dharma_train.evaluation.slot_attention import StepLayout, flash_available

log = logging.getLogger(__name__)


@dataclass
class Chunk:
    """Consecutive prompt tokens of the page in `slot`, from prompt position `start`."""

    slot: int
    start: int
    embeds: torch.Tensor  # [length, hidden]: token embeddings with the page's image features in place
    positions: torch.Tensor  # [3, length]: the page's multimodal rope positions for these tokens

    @property
    def length(self) -> int:
        return self.embeds.shape[0]


def to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`; to CUDA through pinned memory, so the host does not wait for the GPU's queue."""
    if device.type != "cuda":
        return host.to(device)
    return (host if host.is_pinned() else host.pin_memory()).to(device, non_blocking=True)


@contextmanager
def text_attention(model, implementation: str | None):
    """Run the language model's attention through `implementation` for a while; None leaves it as loaded."""
    config = model.model.language_model.config
    saved = config._attn_implementation_internal
    if implementation:
        config._attn_implementation_internal = implementation
    try:
        yield
    finally:
        config._attn_implementation_internal = saved


class SlotDecoder:
    """Slots' device state (last token, position, rope offset, live or parked) and the steps that advance them."""

    def __init__(self, model, slots: int, max_len: int, use_graph: bool, compile_step: bool = False):
        text = model.model.language_model
        config = text.config
        if any(kind != "full_attention" for kind in config.layer_types):
            raise ValueError(f"the slot engine runs full attention only; this model's layers are {config.layer_types}")
        parameter = next(text.parameters())
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.model, self.text, self.slots, self.max_len = model, text, slots, max_len
        self.device = parameter.device
        shape = (slots, max_len, config.num_key_value_heads, head_dim)
        self.keys = [torch.zeros(shape, dtype=parameter.dtype, device=self.device)
                     for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros_like(keys) for keys in self.keys]
        self.flash = flash_available(parameter.dtype, self.device)
        self.slot_index = torch.arange(slots, device=self.device)
        self.tokens = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.position = torch.zeros(slots, dtype=torch.long, device=self.device)  # where the next token goes
        self.rope_offset = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.live = torch.zeros(slots, dtype=torch.bool, device=self.device)
        rows = torch.arange(slots + 1, dtype=torch.int32, device=self.device)
        self.decode_cu_q, self.decode_cu_k = rows, rows * max_len
        self.use_graph = use_graph and self.device.type == "cuda"
        self.decode = torch.compile(self._decode_forward, dynamic=False) if compile_step else self._decode_forward
        self.graph = None
        self.logits = None

    def adopt(self, old: "SlotDecoder") -> None:
        """Take over a smaller decoder's slots: their caches, tokens, positions, rope offsets and live flags."""
        for new, previous in zip(self.keys + self.values, old.keys + old.values):
            new[:, :old.max_len] = previous
        for name in ("tokens", "position", "rope_offset", "live"):
            getattr(self, name).copy_(getattr(old, name))

    def activate(self, slots: torch.Tensor, lengths: torch.Tensor, deltas: torch.Tensor, first: torch.Tensor) -> None:
        """Slots whose prompts are written: they decode from their first token, after their prompt."""
        self.tokens[slots] = first
        self.position[slots] = lengths
        self.rope_offset[slots] = deltas
        self.live[slots] = True

    def park(self, slot: int) -> None:
        """A slot whose page is done: it stops advancing and writes where no page reads until it is taken again."""
        self.live[slot] = False

    def _layout(self, write_slot, write_pos, decode_used, chunks: list[Chunk] | None = None) -> StepLayout:
        """The attention layout of a step: the decode rows', then (mixed step) the chunks'."""
        layout = StepLayout(keys=self.keys, values=self.values, write_slot=write_slot, write_pos=write_pos,
                            decode_used=decode_used, decode_cu_q=self.decode_cu_q, decode_cu_k=self.decode_cu_k,
                            flash=self.flash)
        if chunks:
            lengths = [chunk.length for chunk in chunks]
            bounds = [0]
            for length in lengths:
                bounds.append(bounds[-1] + length)
            starts = [chunk.slot * self.max_len for chunk in chunks] + [(chunks[-1].slot + 1) * self.max_len]
            used = [chunk.start + chunk.length for chunk in chunks]
            layout.chunks = tuple((chunk.slot, chunk.start, chunk.length) for chunk in chunks)
            layout.chunk_cu_q, layout.chunk_cu_k, layout.chunk_used = (
                to_device(torch.tensor(values, dtype=torch.int32), self.device) for values in (bounds, starts, used))
        return layout

    def _decode_rows(self):
        """The decode rows' embeddings, rope positions and cache writes, from the slots' device state alone."""
        write_pos = torch.where(self.live, self.position, self.max_len - 1)
        used = torch.where(self.live, self.position + 1, 1).to(torch.int32)
        rope = (self.position + self.rope_offset).expand(3, self.slots)
        return self.text.embed_tokens(self.tokens), rope, write_pos, used

    def _run(self, embeds: torch.Tensor, rope: torch.Tensor, layout: StepLayout, rows=None) -> torch.Tensor:
        """The language model over one packed step; logits of the given rows (all rows when None)."""
        hidden = self.text(inputs_embeds=embeds[None], position_ids=rope[:, None], use_cache=False,
                           attention_mask={"full_attention": layout}).last_hidden_state[0]
        return self.model.lm_head(hidden if rows is None else hidden[rows])

    def _decode_forward(self) -> torch.Tensor:
        """Logits [slots, vocab] of each slot's next token (the step a CUDA graph captures)."""
        embeds, rope, write_pos, used = self._decode_rows()
        return self._run(embeds, rope, self._layout(self.slot_index, write_pos, used))

    def step(self) -> torch.Tensor:
        """Advance every live slot one token: logits for each slot's next token."""
        if self.use_graph and self.graph is None:
            self._capture()
        if self.graph is not None:
            self.graph.replay()
            logits = self.logits
        else:
            logits = self._eager_decode()
        self.position += self.live
        return logits

    def _eager_decode(self) -> torch.Tensor:
        """The decode step run directly; a compiled step that fails to compile falls back to the uncompiled one
        (rerunning it writes the same keys and values)."""
        try:
            return self.decode()
        except RuntimeError as error:  # torch._dynamo's errors are RuntimeErrors
            if self.decode == self._decode_forward:
                raise
            log.warning("decode step not compiled (%s); running it uncompiled", error)
            self.decode = self._decode_forward
            return self.decode()

    @property
    def compiled(self) -> bool:
        return self.decode != self._decode_forward

    def mixed_step(self, chunks: list[Chunk]) -> tuple[torch.Tensor, torch.Tensor]:
        """The decode step with prompt chunks in the same forward: logits of the decode rows and of each chunk's
        last token. Chunks come in increasing slot order, one per slot."""
        if any(a.slot >= b.slot for a, b in zip(chunks, chunks[1:])):
            raise ValueError("a mixed step takes its chunks in increasing slot order, one per slot")
        embeds, rope, write_pos, used = self._decode_rows()
        slot_of = torch.cat([torch.full((chunk.length,), chunk.slot, dtype=torch.long) for chunk in chunks])
        pos_of = torch.cat([torch.arange(chunk.start, chunk.start + chunk.length) for chunk in chunks])
        ends = torch.tensor([chunk.length for chunk in chunks]).cumsum(0) + self.slots - 1
        write_slot = torch.cat([self.slot_index, to_device(slot_of, self.device)])
        write_pos = torch.cat([write_pos, to_device(pos_of, self.device)])
        embeds = torch.cat([embeds] + [chunk.embeds.to(embeds.dtype) for chunk in chunks])
        rope = torch.cat([rope] + [chunk.positions for chunk in chunks], dim=1)
        rows = torch.cat([self.slot_index, to_device(ends, self.device)])
        logits = self._run(embeds, rope, self._layout(write_slot, write_pos, used, chunks), rows)
        self.position += self.live
        return logits[:self.slots], logits[self.slots:]

    def _capture(self) -> None:
        """Record the decode step once in a CUDA graph (after warm-up runs on a side stream, as PyTorch requires)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # the first run compiles the step when compile_step is on
                self._eager_decode()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.logits = self.decode()
            self.graph = graph
        except RuntimeError as error:  # a model whose step cannot be captured still decodes, one launch at a time
            log.warning("decode step not captured in a CUDA graph (%s); running it eagerly", error)
            self.use_graph = False

