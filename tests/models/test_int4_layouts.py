"""The int4 layout unpackers invert the packers they were written from, and dequantize is (code - zero) * scale.

The packers below are line-by-line transcriptions of the real ones (the CUDA kernel cannot run here; gemlite needs
CUDA to import): PyTorch's `matrix_to_m16n8k16_Bint4_layout` (aten/src/ATen/native/cuda/int4mm.cu, NVIDIA branch)
and gemlite 0.6's `pack_weights_over_cols_torch` with transpose=True, made contiguous as GemLiteLinear.pack does.
"""

from __future__ import annotations

import pytest
import torch

from dharma_train.models.int4_layouts import dequantize, unpack_input_packed, unpack_tinygemm_cuda


def _tinygemm_cuda_pack(codes: torch.Tensor, inner_k_tiles: int) -> torch.Tensor:
    """The CUDA kernel's loops in Python: input uint8 [n][k/2] (even input in the high nibble), one lane at a time."""
    n, k = codes.shape
    pairs = (codes[:, ::2].to(torch.int64) << 4 | codes[:, 1::2].to(torch.int64)).tolist()
    out = torch.zeros(n // 8, k // (inner_k_tiles * 16), 32, inner_k_tiles // 2, dtype=torch.int64)
    for n_tile in range(out.shape[0]):
        for k_outer in range(out.shape[1]):
            for t in range(32):
                for inner in range(0, inner_k_tiles, 2):
                    n0 = n_tile * 8 + t // 4
                    k_base0 = (k_outer * inner_k_tiles + inner) * 16 // 2
                    ks = [k_base0 + t % 4, k_base0 + t % 4 + 4]
                    k_base1 = k_base0 + 16 // 2
                    ks += [k_base1 + t % 4, k_base1 + t % 4 + 4]
                    v = [pairs[n0][index] for index in ks]
                    pack = ((v[3] & 0xF) << 28 | (v[2] & 0xF) << 24 | (v[1] & 0xF) << 20 | (v[0] & 0xF) << 16
                            | (v[3] & 0xF0) << 8 | (v[2] & 0xF0) << 4 | (v[1] & 0xF0) | (v[0] & 0xF0) >> 4)
                    out[n_tile, k_outer, t, inner // 2] = pack
    return (out - ((out >> 31) << 32)).to(torch.int32)  # the uint32 bit pattern as int32


def _gemlite_pack(codes: torch.Tensor) -> torch.Tensor:
    """gemlite's 4-bit packing over the inputs into 32-bit words, transposed to [in/8, out] and made contiguous."""
    values = codes.to(torch.int32)
    out = torch.zeros(values.shape[0], values.shape[1] // 8, dtype=torch.int32)
    for j in range(values.shape[1]):
        out[:, j // 8] |= values[:, j] << ((j % 8) * 4)
    return out.t().contiguous()


@pytest.mark.parametrize("inner_k_tiles", [2, 8])
def test_the_tinygemm_cuda_layout_unpacks_to_its_codes(inner_k_tiles):
    torch.manual_seed(0)
    codes = torch.randint(0, 16, (24, 256), dtype=torch.uint8)
    packed = _tinygemm_cuda_pack(codes, inner_k_tiles)
    assert packed.shape == (3, 256 // (inner_k_tiles * 16), 32, inner_k_tiles // 2)
    assert torch.equal(unpack_tinygemm_cuda(packed, 24, 256), codes)


def test_the_gemlite_layout_unpacks_to_its_codes():
    torch.manual_seed(1)
    codes = torch.randint(0, 16, (40, 128), dtype=torch.uint8)
    words = _gemlite_pack(codes)
    assert words.shape == (16, 40) and words.dtype == torch.int32
    assert torch.equal(unpack_input_packed(words, 40, 128), codes)


def test_dequantize_is_code_minus_zero_times_scale_per_group():
    codes = torch.tensor([[0, 15, 8, 9], [1, 2, 3, 4]], dtype=torch.uint8)
    scale = torch.tensor([[0.5, 2.0], [1.0, 0.25]])
    zero = torch.tensor([[8, 8], [0, 4]], dtype=torch.int8)
    expected = torch.tensor([[-4.0, 3.5, 0.0, 2.0], [1.0, 2.0, -0.25, 0.0]])
    assert torch.equal(dequantize(codes, scale, zero, torch.float32), expected)
