"""Attention over many independent sequences laid end to end: one kernel call on CUDA, an exact loop elsewhere.

`cu_seqlens` lists where each sequence starts ([0, n0, n0 + n1, ...]). On CUDA in bf16/fp16,
`torch.nn.attention.varlen.varlen_attn` (FlashAttention-2 inside PyTorch, forward and backward) runs every
sequence in one launch. Elsewhere (CPU, fp32) each sequence gets its own `scaled_dot_product_attention` call:
the same maths, used as the reference in tests and as the fallback on machines without the kernel.
Both the vision tower (windows, bidirectional) and the packed language model (samples, causal) use it.
"""

from __future__ import annotations

import inspect
import logging
from functools import cache

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

HALF = (torch.bfloat16, torch.float16)


@cache
def _kernel():
    """varlen_attn and its keyword names, which moved between PyTorch 2.10 and 2.13 (is_causal, window_size, GQA)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def varlen_available() -> bool:
    return _kernel() is not None


def varlen_parameters() -> list[str] | None:
    """The installed varlen_attn's keyword names (None without it); public so benchmark logs record the signature."""
    return sorted(_kernel()[1]) if _kernel() else None


def compute_dtype(query: torch.Tensor) -> torch.dtype:
    """The dtype attention runs in: the query's, or under autocast to half precision that one, as autocast does for
    sdpa (fp32 master weights leave the rotary-embedded queries in fp32, which would miss the one-launch kernel)."""
    device = query.device.type
    if query.dtype not in HALF and torch.is_autocast_enabled(device):
        autocast_dtype = torch.get_autocast_dtype(device)
        if autocast_dtype in HALF:
            return autocast_dtype
    return query.dtype


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
           scale: float, causal: bool) -> torch.Tensor:
    """Attention within each sequence of a packed [tokens, heads, dim] batch; key/value may have fewer heads (GQA).
    One launch on CUDA in half precision (or autocast to it) with PyTorch >= 2.10, else one sdpa call per sequence."""
    dtype = compute_dtype(query)
    if query.is_cuda and dtype in HALF and varlen_available():
        query, key, value = (t.to(dtype) for t in (query, key, value))
        return _varlen_kernel(query, key, value, cu_seqlens, max_seqlen, scale, causal)
    if query.is_cuda:
        _warn_slow_path_once(query.dtype)
    return _per_sequence(query, key, value, cu_seqlens, scale, causal)


@cache
def _warn_slow_path_once(dtype: torch.dtype) -> None:
    """fp32 on a GPU silently costs many times the step time (docs/experiments/ocr-rung.md): say so once."""
    log.warning("attention over packed sequences in %s on CUDA runs one sdpa call per sequence (the one-launch varlen "
                "kernel needs bf16/fp16%s); with many vision windows this dominates the step: use "
                "trainer.precision=auto or bf16", str(dtype).removeprefix("torch."),
                "" if varlen_available() else " and PyTorch >= 2.10")


def _varlen_kernel(query, key, value, cu_seqlens, max_seqlen, scale, causal):
    varlen_attn, parameters = _kernel()
    options = {"scale": scale}
    if causal:
        options.update({"window_size": (-1, 0)} if "window_size" in parameters else {"is_causal": True})
    if key.shape[1] != query.shape[1] and "enable_gqa" in parameters:
        options["enable_gqa"] = True
    cu_seqlens = cu_seqlens.to(device=query.device, dtype=torch.int32)
    arguments = (cu_seqlens, cu_seqlens, int(max_seqlen), int(max_seqlen))
    try:  # FlashAttention-2 takes fewer key/value heads natively; builds that refuse them get repeated heads
        return varlen_attn(query.contiguous(), key.contiguous(), value.contiguous(), *arguments, **options)
    except (RuntimeError, ValueError):
        if key.shape[1] == query.shape[1]:
            raise
        key, value = _repeat_heads(key, value, query.shape[1])
        return varlen_attn(query.contiguous(), key.contiguous(), value.contiguous(), *arguments, **options)


def _per_sequence(query, key, value, cu_seqlens, scale, causal):
    """One sdpa call per sequence, in the layout transformers' own per-window loop uses ([1, heads, tokens, dim])."""
    key, value = _repeat_heads(key, value, query.shape[1])
    bounds = cu_seqlens.tolist()
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (query, key, value))
        outputs.append(F.scaled_dot_product_attention(q, k, v, scale=scale, is_causal=causal).squeeze(0).transpose(0, 1))
    return torch.cat(outputs, dim=0)


def _repeat_heads(key, value, heads: int):
    groups = heads // key.shape[1]
    if groups == 1:
        return key, value
    return key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)


def max_seqlen(cu_seqlens: torch.Tensor) -> int:
    """Longest sequence; remembered on the tensor, so layers sharing one cu_seqlens pay one device sync, not one each."""
    cached = getattr(cu_seqlens, "_dharma_max_seqlen", None)
    if cached is None:
        cached = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        cu_seqlens._dharma_max_seqlen = cached
    return cached
