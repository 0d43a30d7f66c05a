"""The decode step of the continuous-batching engine: a fixed number of slots, each with its own KV cache rows.

Every slot holds one page at its own position. A step feeds each slot's last token, writes its key and value at
the slot's own cache index, and attends over the slot's rows under a per-slot mask, so pages of different lengths
and ages decode together and a finished page's slot is refilled without touching the others. The step's shapes
never change, so on CUDA it is captured once in a CUDA graph and replayed: one launch a step instead of hundreds.
Prefill runs the language model on a page or a group of same-length pages, with their images encoded beforehand
(`vision_stage.py`) or by the stock model, then copies the keys and values into the slots.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from dharma_train.evaluation.vision_stage import embed_with_images

log = logging.getLogger(__name__)

SLOT_ATTENTION = "dharma_slots"


class SlotCache:
    """Per-layer key and value buffers [slots, kv_heads, max_len, head_dim]; each slot writes at its own index."""

    def __init__(self, layers: int, slots: int, max_len: int, kv_heads: int, head_dim: int, dtype, device):
        shape = (slots, kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.rows = torch.arange(slots, device=device)
        self.write_at = torch.zeros(slots, dtype=torch.long, device=device)  # cache index of this step's token

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        """The transformers Cache hook: store this step's key/value per slot, return the whole buffers."""
        self.keys[layer_idx][self.rows, :, self.write_at] = key[:, :, 0]
        self.values[layer_idx][self.rows, :, self.write_at] = value[:, :, 0]
        return self.keys[layer_idx], self.values[layer_idx]

    def load(self, slot: int, prefill: DynamicCache, row: int) -> None:
        """Copy one prefilled page's keys and values into a slot's first positions."""
        for layer, (keys, values) in enumerate(zip(self.keys, self.values)):
            length = prefill.layers[layer].keys.shape[2]
            keys[slot, :, :length] = prefill.layers[layer].keys[row]
            values[slot, :, :length] = prefill.layers[layer].values[row]


def slot_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """One-token attention over each slot's rows with grouped KV heads read once (no repeat_kv copy); else sdpa."""
    if query.shape[2] != 1 or attention_mask is None or attention_mask.dtype != torch.bool:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    grouped = query.view(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * (scaling or dim ** -0.5)
    scores = scores.masked_fill(~attention_mask, float("-inf"))  # mask [slots, 1, 1, max_len]
    probabilities = torch.softmax(scores, dim=-1).to(value.dtype)
    output = torch.matmul(probabilities, value).view(batch, heads, 1, dim)
    return output.transpose(1, 2), None


AttentionInterface.register(SLOT_ATTENTION, slot_attention)


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
    """Slots' device state (last token, cache index, rope offset) and the step that advances all of them."""

    def __init__(self, model, slots: int, max_len: int, use_graph: bool):
        text = model.model.language_model
        config = text.config
        parameter = next(text.parameters())
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.model, self.slots, self.max_len = model, slots, max_len
        self.device = parameter.device
        self.cache = SlotCache(config.num_hidden_layers, slots, max_len, config.num_key_value_heads, head_dim,
                               parameter.dtype, self.device)
        self.tokens = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.rope_offset = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.positions = torch.arange(max_len, device=self.device)
        self.logits = None
        self.graph = None
        self.use_graph = use_graph and self.device.type == "cuda"

    def adopt(self, old: "SlotDecoder") -> None:
        """Take over a smaller decoder's slots: their caches, last tokens, cache indices and rope offsets."""
        for new, previous in zip(self.cache.keys + self.cache.values, old.cache.keys + old.cache.values):
            new[:, :, :old.max_len] = previous
        self.cache.write_at.copy_(old.cache.write_at)
        self.tokens.copy_(old.tokens)
        self.rope_offset.copy_(old.rope_offset)

    def _forward(self) -> torch.Tensor:
        """Logits [slots, vocab] for each slot's next token, from the slots' device state alone."""
        text = self.model.model.language_model
        embeds = text.embed_tokens(self.tokens)[:, None]
        rope = (self.cache.write_at + self.rope_offset).view(1, self.slots, 1).expand(3, self.slots, 1)
        mask = (self.positions[None, :] <= self.cache.write_at[:, None])[:, None, None, :]
        hidden = text(inputs_embeds=embeds, position_ids=rope, attention_mask={"full_attention": mask},
                      past_key_values=self.cache, use_cache=True).last_hidden_state
        return self.model.lm_head(hidden[:, -1]).float()

    def step(self) -> torch.Tensor:
        """Advance every slot one token: logits for the next token; the cache index moves on by one."""
        if not self.use_graph:
            logits = self._forward()
        else:
            if self.graph is None:
                self._capture()
            if self.graph is None:
                logits = self._forward()
            else:
                self.graph.replay()
                logits = self.logits
        self.cache.write_at += 1
        return logits

    def _capture(self) -> None:
        """Record the step once in a CUDA graph (after warm-up runs on a side stream, as PyTorch requires)."""
        saved = self.cache.write_at.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.logits = self._forward()
            self.graph = graph
        except RuntimeError as error:  # a model whose step cannot be captured still decodes, one launch at a time
            log.warning("decode step not captured in a CUDA graph (%s); running it eagerly", error)
            self.use_graph = False
        self.cache.write_at.copy_(saved)

    def prefill(self, inputs: dict, slots: list[int], image_features: list[torch.Tensor] | None = None
                ) -> torch.Tensor:
        """Run a group of same-length prompts through the model, move their caches into `slots`; last logits.
        image_features: the pages' images already encoded (vision_stage.py); None runs the vision tower here."""
        model = self.model.model
        extra = {key: inputs[key] for key in ("image_grid_thw", "video_grid_thw", "mm_token_type_ids")
                 if inputs.get(key) is not None}
        position_ids, deltas = model.get_rope_index(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                                    **extra)
        cache = DynamicCache(config=self.model.config)
        if image_features is None:
            hidden = model(**inputs, position_ids=position_ids, past_key_values=cache,
                           use_cache=True).last_hidden_state
        else:
            embeds = embed_with_images(self.model, inputs["input_ids"], image_features)
            hidden = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], position_ids=position_ids,
                           past_key_values=cache, use_cache=True).last_hidden_state
        length = inputs["input_ids"].shape[1]
        index = torch.tensor(slots, device=self.device)
        for row, slot in enumerate(slots):
            self.cache.load(slot, cache, row)
        self.cache.write_at[index] = length
        self.rope_offset[index] = deltas.view(-1).to(self.device)
        return self.model.lm_head(hidden[:, -1]).float()
