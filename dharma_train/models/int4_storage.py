"""Where an int4 layer's codes live, one copy each: torch's int4 kernel layout (tinygemm, CUDA or CPU) or gemlite's
(CUDA, optional `dharma_train[gemlite]`). Each storage multiplies by its own kernel and gives its codes back, so a
layer can run a bf16 matmul on them, or move to the other storage, without keeping a second copy.
"""

from __future__ import annotations

import torch

from dharma_train.models.int4_layouts import unpack_input_packed, unpack_tinygemm_cuda

INNER_K_TILES = 8  # tinygemm tiling: in_features must be a multiple of 8 * 16
GEMLITE_INSTALL = "pip install 'dharma_train[gemlite]'"


class TinyGemmStorage(torch.nn.Module):
    """Codes packed for torch's int4 weight-only kernel (value = (q - 8) * s + z): fast at a few rows."""

    name = "tinygemm"

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, zero_code: torch.Tensor, group_size: int):
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.group_size = group_size
        self.on_cuda = codes.device.type == "cuda"
        if self.on_cuda:
            pairs = (codes[:, ::2].to(torch.int32) << 4 | codes[:, 1::2].to(torch.int32)).to(torch.uint8)
            packed = torch.ops.aten._convert_weight_to_int4pack(pairs.contiguous(), INNER_K_TILES)
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(),
                                                                         INNER_K_TILES)
        self.register_buffer("packed", packed)
        self.register_buffer("scales_and_zeros", _scales_and_zeros(scale, (8 - zero_code.float()) * scale.float()))

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [rows, in] @ W.T, on the kernel."""
        if self.on_cuda:
            return torch.ops.aten._weight_int4pack_mm(x, self.packed, self.group_size, self.scales_and_zeros)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, self.group_size, self.scales_and_zeros)

    def codes(self) -> torch.Tensor:
        """The codes, uint8 [out, in]: unpacked from the CUDA layout, or on the CPU read back through the kernel."""
        if self.on_cuda:
            return unpack_tinygemm_cuda(self.packed, self.out_features, self.in_features)
        return self._codes_through_kernel()

    def _codes_through_kernel(self, chunk: int = 1024) -> torch.Tensor:
        """CPU only (its packed layout depends on the CPU's vector width): identity rows through the kernel with
        scale 1 and zero 8 return each code exactly, a few columns at a time."""
        groups = self.in_features // self.group_size
        unit = _scales_and_zeros(torch.ones(self.out_features, groups), torch.full((self.out_features, groups), 8.0))
        columns = []
        for start in range(0, self.in_features, chunk):
            rows = torch.eye(self.in_features)[start:start + chunk]
            columns.append(torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size, unit))
        return torch.cat(columns).t().round().to(torch.uint8)


def _scales_and_zeros(scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """tinygemm's [groups, out, 2] table of (scale, zero) in the layer's compute dtype."""
    return torch.stack([scale.float(), zero.float()], dim=-1).transpose(0, 1).contiguous().to(scale.dtype)


class GemliteStorage(torch.nn.Module):
    """Codes in gemlite's bf16 A16W4 layer (value = (q - zero_code) * s): its Triton GEMV/split-K kernels."""

    name = "gemlite"

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, zero_code: torch.Tensor, group_size: int):
        super().__init__()
        from gemlite import DType, GemLiteLinear

        self.out_features, self.in_features = codes.shape
        layer = GemLiteLinear(4, group_size=group_size, in_features=self.in_features, out_features=self.out_features,
                              input_dtype=DType.BF16, output_dtype=DType.BF16)
        layer.pack(codes, scale.to(torch.bfloat16), zero_code.to(torch.bfloat16), bias=None, fma_mode=False)
        expected = (self.in_features // 8, self.out_features)
        if layer.W_q.dtype != torch.int32 or tuple(layer.W_q.shape) != expected or not layer.data_contiguous:
            raise RuntimeError(f"gemlite packed {tuple(layer.W_q.shape)} {layer.W_q.dtype}, not the int32 {expected} "
                               "layout dharma_train unpacks; this gemlite version is not supported")
        self.gemlite = layer

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [rows, in] @ W.T, on gemlite's kernel for this many rows."""
        return self.gemlite(x)

    def codes(self) -> torch.Tensor:
        """The codes, uint8 [out, in], unpacked from gemlite's words."""
        return unpack_input_packed(self.gemlite.W_q, self.out_features, self.in_features)


STORAGES = {TinyGemmStorage.name: TinyGemmStorage, GemliteStorage.name: GemliteStorage}
