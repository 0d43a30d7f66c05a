"""The int4 weight layouts the decode kernels read, unpacked back to codes with plain torch ops, and codes turned into
a dense weight: what lets a forward of many tokens run on a bf16 matmul without a second copy of the weights.

Codes are uint8 [out_features, in_features] in 0..15; a weight is (code - zero_code) * scale, one scale and zero code
per group of inputs (scale and zero_code [out_features, groups]). No library unpacks these layouts (torchao's
tinygemm unpacker is a CUDA extension of its own), so the two unpackers below are hand-written from the packers'
sources: PyTorch's `matrix_to_m16n8k16_Bint4_layout` (aten/src/ATen/native/cuda/int4mm.cu, NVIDIA branch) and
gemlite's `pack_weights_over_cols` (32-bit words over the inputs, transposed).
"""

from __future__ import annotations

import torch


def _nibbles(words: torch.Tensor) -> torch.Tensor:
    """The eight 4-bit fields of each int32 word, lowest bits first, as uint8 in a new last dimension of 8."""
    shifts = torch.arange(0, 32, 4, device=words.device, dtype=torch.int32)
    return ((words.unsqueeze(-1) >> shifts) & 0xF).to(torch.uint8)


def unpack_tinygemm_cuda(packed: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """Codes from torch's CUDA int4 layout [out/8, in/(inner_k_tiles*16), 32, inner_k_tiles/2] (int32)."""
    n_tiles, k_outer, lanes, inner = packed.shape
    # lane = 4 * row in the 8-row tile + k pair; nibble = 4 * (odd input) + 2 * (second 8 bytes) + (second 4 bytes)
    fields = _nibbles(packed).view(n_tiles, k_outer, 8, lanes // 8, inner, 2, 2, 2)
    # input index = k_outer * inner*32 + inner_pair * 32 + second_8 * 16 + second_4 * 8 + k_pair * 2 + odd
    codes = fields.permute(0, 2, 1, 4, 6, 7, 3, 5).reshape(n_tiles * 8, k_outer * inner * 32)
    return codes[:out_features, :in_features]


def unpack_input_packed(words: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """Codes from gemlite's 4-bit layout: int32 [in/8, out], input k in word k // 8 at bits 4 * (k % 8)."""
    return _nibbles(words).permute(1, 0, 2).reshape(out_features, in_features)


def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero_code: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The dense [out, in] weight in `dtype`: (code - zero_code) * scale, group by group."""
    rows, columns = codes.shape
    groups = scale.shape[1]
    grouped = codes.view(rows, groups, columns // groups).to(dtype)
    return ((grouped - zero_code.to(dtype)[..., None]) * scale.to(dtype)[..., None]).view(rows, columns)
