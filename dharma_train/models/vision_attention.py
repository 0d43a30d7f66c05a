"""One variable-length attention call per vision layer instead of one small sdpa call per window.

Qwen2.5-VL's vision tower attends within windows listed by `cu_seqlens`. With sdpa, transformers runs one kernel
per window per layer (tens of thousands per page batch): on an H100 that loop is ~94 % of a training step and
most of a generation prefill (docs/generation-benchmark.md, docs/performance.md). Unless flash-attn is requested,
this module swaps each vision attention's forward for one that attends over all windows at once through
`dharma_train.models.varlen.attend`: one `varlen_attn` launch (forward and backward) on CUDA in bf16/fp16, and
elsewhere the same per-window sdpa loop transformers runs, so CPU and fp32 results match the stock forward.
Hand-written because transformers routes varlen only to flash-attn (5.17 to 5.23).
"""

from __future__ import annotations

import types

import torch

from dharma_train.models.varlen import attend, varlen_available
from dharma_train.models.varlen import max_seqlen as longest

__all__ = ["use_varlen_vision_attention", "varlen_available"]


def use_varlen_vision_attention(model) -> int:
    """Patch every vision attention module of a Qwen2.5-VL model; returns how many were patched."""
    if not varlen_available():
        return 0
    patched = 0
    for module in model.modules():
        if type(module).__name__ in ("Qwen2_5_VLVisionAttention", "VisionAttention") and hasattr(module, "qkv"):
            if getattr(module, "_dharma_stock_forward", None) is None:
                module._dharma_stock_forward = module.forward
                module.forward = types.MethodType(_varlen_forward, module)
                patched += 1
    return patched


def _varlen_forward(self, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                    max_seqlen: int | None = None, **kwargs) -> torch.Tensor:
    """The stock computation (qkv, 2D rotary, attention per window, proj) with every window in one call."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

    seq_length = hidden_states.shape[0]
    query, key, value = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    query, key = apply_rotary_pos_emb_vision(query, key, cos, sin)
    output = attend(query, key, value, cu_seqlens, max_seqlen or longest(cu_seqlens), self.scaling, causal=False)
    return self.proj(output.reshape(seq_length, -1))
