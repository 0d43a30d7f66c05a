"""Padding-free language model: a padded batch runs as one packed row, attention kept inside each sample.

Pages differ in size and answers run from tens to thousands of tokens, so a padded batch can be half padding.
`use_padding_free` wraps the language model's forward: it drops the pad positions (the attention mask says which),
lays the samples end to end, and attends within each one through `dharma_train.models.varlen.attend` (one
`varlen_attn` launch on CUDA). Positions are the model's own: the 3-D mrope ids Qwen2.5-VL computes for the padded
batch, plus a per-sample text position row, the packed format transformers 5.17+ documents for Qwen2-VL models.
The output is scattered back to the padded layout, so the loss code above it (TRL's fused LM head, DPO's
per-sequence sums, transformers' loss) is unchanged. Generation (with a KV cache) takes the stock path.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from dharma_train.models.varlen import attend

ATTENTION = "dharma_packed"  # registered with transformers' AttentionInterface for the language model only
TEXT_MODELS = ("Qwen2_5_VLTextModel", "Qwen2VLTextModel")


def use_padding_free(model) -> int:
    """Wrap the language model(s) inside `model`; returns how many were wrapped (0 when already done or none)."""
    _register_attention()
    wrapped = 0
    for module in model.modules():
        if type(module).__name__ in TEXT_MODELS and getattr(module, "_dharma_padded_forward", None) is None:
            module.config._attn_implementation = ATTENTION
            module._dharma_padded_forward = module.forward
            module.forward = types.MethodType(_packed_forward, module)
            wrapped += 1
    return wrapped


def _packed_forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                    inputs_embeds=None, use_cache=None, **kwargs):
    """Pack, run the stock forward on one row with sample boundaries, unpack."""
    if not _packable(self, attention_mask, past_key_values, use_cache, kwargs):
        return self._dharma_padded_forward(input_ids=input_ids, attention_mask=attention_mask,
                                           position_ids=position_ids, past_key_values=past_key_values,
                                           inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)
    if inputs_embeds is None:
        inputs_embeds = self.embed_tokens(input_ids)
    batch, length, hidden = inputs_embeds.shape
    keep = attention_mask.bool()
    index = keep.flatten().nonzero().squeeze(1)
    lengths = keep.sum(-1, dtype=torch.int32)
    cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
    longest = int(lengths.max())
    packed_positions = _packed_positions(keep, position_ids, index)
    outputs = self._dharma_padded_forward(
        inputs_embeds=inputs_embeds.flatten(0, 1).index_select(0, index).unsqueeze(0), attention_mask=None,
        position_ids=packed_positions, use_cache=False, cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens,
        max_length_q=longest, max_length_k=longest, **kwargs)
    packed = outputs.last_hidden_state[0]
    outputs.last_hidden_state = packed.new_zeros(batch * length, hidden).index_copy(0, index, packed).view(
        batch, length, hidden)
    return outputs


def _packable(model, attention_mask, past_key_values, use_cache, kwargs) -> bool:
    """A 2-D padding mask, no KV cache, and no per-layer outputs asked for (those would come back packed)."""
    if attention_mask is None or attention_mask.ndim != 2 or past_key_values is not None:
        return False
    if use_cache and not model.training:
        return False
    return not (kwargs.get("output_hidden_states") or kwargs.get("output_attentions"))


def _packed_positions(keep: torch.Tensor, position_ids: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
    """[4, 1, tokens]: per-sample text positions on top of the model's 3-D (temporal, height, width) rope ids."""
    text = (keep.long().cumsum(-1) - 1).flatten().index_select(0, index)
    if position_ids is None:
        rope = text.expand(3, -1)
    else:
        if position_ids.ndim == 2:
            position_ids = position_ids.unsqueeze(0).expand(3, -1, -1)
        if position_ids.shape[0] == 4:  # already carries a text row: rebuilt from the mask below
            position_ids = position_ids[1:]
        rope = position_ids.flatten(1).index_select(1, index)
    return torch.cat([text.unsqueeze(0), rope], dim=0).unsqueeze(1)


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, cu_seq_lens_q=None, max_length_q=None, position_ids=None,
                     **kwargs):
    """Causal attention per packed sample; batches that are not packed go to transformers' sdpa unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    for unused in ("cu_seq_lens_k", "max_length_k"):
        kwargs.pop(unused, None)
    if cu_seq_lens_q is None and attention_mask is None and position_ids is not None:
        cu_seq_lens_q, max_length_q = _boundaries(position_ids)
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if dropout or kwargs.get("sliding_window"):
        raise ValueError("padding-free attention supports neither attention dropout nor sliding windows")
    batch, heads, tokens, dim = query.shape
    q, k, v = (t.transpose(1, 2).reshape(batch * tokens, t.shape[1], dim) for t in (query, key, value))
    output = attend(q, k, v, cu_seq_lens_q, max_length_q, scaling or dim ** -0.5, causal=True)
    return output.view(batch, tokens, heads, dim), None


def _boundaries(position_ids: torch.Tensor) -> tuple[torch.Tensor | None, int | None]:
    """Sample starts from packed positions (each sample restarts at 0); None when nothing is packed."""
    flat = position_ids.flatten()
    starts = (flat == 0).nonzero().squeeze(1)
    if starts.numel() <= position_ids.shape[0]:  # one sample per row: not packed
        return None, None
    cu_seqlens = torch.cat([starts, starts.new_tensor([flat.numel()])]).to(torch.int32)
    return cu_seqlens, int((cu_seqlens[1:] - cu_seqlens[:-1]).max())


def _padding_mask(*args, attention_mask=None, **kwargs):
    """Mask builder for ATTENTION: none for packed or unpadded rows, sdpa's own mask when there is padding."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, packed_attention)
    AttentionMaskInterface.register(ATTENTION, _padding_mask)
