"""Attention for the slots' packed steps: the step's keys and values go into the slots' cache, then every query
attends over its own slot's rows up to its own position, and no further.

A step is one packed sequence: `slots` decode rows (one token per slot, in slot order; a parked slot's row is
computed and dropped) followed by prompt chunks (consecutive prompt tokens of one slot each, in slot order). The
cache is token-major, [slots, max_len, kv_heads, head_dim] per layer, so its rows flattened are the key/value
sequences FlashAttention's varlen kernel takes. On CUDA in half precision attention is that kernel inside PyTorch
(`aten._flash_attention_forward`) with `seqused_k`: each sequence reads only its live keys, the grouped key/value
heads once (no repeat), decode rows in one call and chunks (causal, aligned to the end of their keys) in another.
Elsewhere (CPU, fp32) the same maths runs as masked matmuls: the reference the tests compare with `generate`.
This module is hand-written because transformers' caches and masks assume one position per batch row, which a
step mixing decode rows and prompt chunks does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

SLOT_ATTENTION = "dharma_slots"
_HALF = (torch.bfloat16, torch.float16)


@dataclass
class StepLayout:
    """Where one step's tokens go in the cache and which keys each of its queries may read."""

    keys: list[torch.Tensor]  # per layer [slots, max_len, kv_heads, head_dim]
    values: list[torch.Tensor]
    write_slot: torch.Tensor  # [tokens] long: the slot each token's key and value go to
    write_pos: torch.Tensor  # [tokens] long: and the cache position
    decode_used: torch.Tensor  # [slots] int32: keys each decode row reads (its position + 1; 1 for a parked slot)
    decode_cu_q: torch.Tensor  # [slots + 1] int32: 0, 1, ..., slots
    decode_cu_k: torch.Tensor  # [slots + 1] int32: where each slot's rows start in the flattened cache
    flash: bool  # attention through the varlen kernel (CUDA, half precision)
    chunks: tuple[tuple[int, int, int], ...] = ()  # (slot, start, length) of each prompt chunk, slots increasing
    chunk_cu_q: torch.Tensor | None = None  # [chunks + 1] int32: chunk bounds among the chunk queries
    chunk_cu_k: torch.Tensor | None = None  # [chunks + 1] int32: each chunk's slot's first row (then one past)
    chunk_used: torch.Tensor | None = None  # [chunks] int32: keys each chunk reads (start + length)

    @property
    def slots(self) -> int:
        return self.decode_used.shape[0]


@cache
def flash_with_seqused() -> bool:
    """Whether this PyTorch's FlashAttention op takes `seqused_k` (2.5 and later)."""
    schema = torch.ops.aten._flash_attention_forward.default._schema
    return any(argument.name == "seqused_k" for argument in schema.arguments)


def flash_available(dtype: torch.dtype, device: torch.device) -> bool:
    """The varlen kernel runs here: a CUDA device, half precision, and an op that takes `seqused_k`."""
    return device.type == "cuda" and dtype in _HALF and flash_with_seqused()


def slot_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The attention interface for a slot step (`attention_mask` is its StepLayout); any other call goes to sdpa."""
    layout = attention_mask
    if not isinstance(layout, StepLayout):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    keys, values = layout.keys[module.layer_idx], layout.values[module.layer_idx]
    keys[layout.write_slot, layout.write_pos] = key[0].transpose(0, 1)  # [tokens, kv_heads, head_dim]
    values[layout.write_slot, layout.write_pos] = value[0].transpose(0, 1)
    queries = query[0].transpose(0, 1)  # [tokens, heads, head_dim]
    scale = scaling or query.shape[-1] ** -0.5
    attend = _flash if layout.flash else _masked
    output = attend(queries, keys, values, layout, scale)
    return output[None], None  # [1, tokens, heads, head_dim], as transformers' attention functions return


AttentionInterface.register(SLOT_ATTENTION, slot_attention)


def _flash(queries, keys, values, layout: StepLayout, scale: float) -> torch.Tensor:
    """Two varlen kernel calls (decode rows, then chunks), each reading only its sequences' live keys."""
    flat_keys, flat_values = keys.flatten(0, 1), values.flatten(0, 1)  # [slots * max_len, kv_heads, head_dim]
    max_len = keys.shape[1]
    slots = layout.slots
    parts = [_flash_call(queries[:slots], flat_keys, flat_values, layout.decode_cu_q, layout.decode_cu_k, 1,
                         max_len, layout.decode_used, scale, causal=False)]
    if layout.chunks:
        longest = max(length for _, _, length in layout.chunks)
        parts.append(_flash_call(queries[slots:], flat_keys, flat_values, layout.chunk_cu_q, layout.chunk_cu_k,
                                 longest, max_len, layout.chunk_used, scale, causal=True))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _flash_call(queries, keys, values, cu_q, cu_k, max_q, max_k, used, scale, causal):
    """One FlashAttention-2 varlen call over cache rows; causal aligns each chunk's queries to the end of its keys."""
    return torch.ops.aten._flash_attention_forward(
        queries.contiguous(), keys, values, cu_q, cu_k, max_q, max_k, 0.0, causal, False, scale=scale,
        seqused_k=used)[0]


def _masked(queries, keys, values, layout: StepLayout, scale: float) -> torch.Tensor:
    """The same attention as masked matmuls over each slot's whole rows: the decode rows as one batched product per
    key/value head (strided views of the cache, no copy of it), then one sdpa per chunk."""
    slots, max_len, kv_heads, dim = keys.shape
    heads = queries.shape[1]
    grouped = queries[:slots].reshape(slots, kv_heads, heads // kv_heads, dim)
    hidden = torch.arange(max_len, device=keys.device)[None, None, :] >= layout.decode_used[:, None, None]
    per_head = []
    for head in range(kv_heads):
        scores = torch.bmm(grouped[:, head], keys[:, :, head].transpose(1, 2)).float() * scale  # [slots, group, len]
        probabilities = torch.softmax(scores.masked_fill(hidden, float("-inf")), dim=-1).to(values.dtype)
        per_head.append(torch.bmm(probabilities, values[:, :, head]))  # [slots, group, dim]
    parts = [torch.stack(per_head, dim=1).reshape(slots, heads, dim)]
    offset = slots
    for slot, start, length in layout.chunks:
        chunk = queries[offset:offset + length].transpose(0, 1)[None]  # [1, heads, length, dim]
        seen_keys = keys[slot, :start + length].transpose(0, 1)[None]
        seen_values = values[slot, :start + length].transpose(0, 1)[None]
        causal = torch.ones(length, start + length, dtype=torch.bool, device=keys.device).tril(diagonal=start)
        output = F.scaled_dot_product_attention(chunk, seen_keys, seen_values, attn_mask=causal, scale=scale,
                                                enable_gqa=True)
        parts.append(output[0].transpose(0, 1))
        offset += length
    return torch.cat(parts) if len(parts) > 1 else parts[0]
