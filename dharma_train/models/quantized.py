"""Quantized checkpoints: which method a saved folder uses, whether this machine has the package that loads it, and
an int4 decode path: compressed-tensors' W4A16 layers rebuilt on torch's int4 weight-only kernel (tinygemm)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from dharma_train.errors import ModelUnavailableError
from dharma_train.models.int4_layouts import dequantize
from dharma_train.models.int4_storage import INNER_K_TILES, STORAGES, TinyGemmStorage

# config.json's quantization_config.quant_method -> (the module transformers needs to load it, how to install it)
LOADERS = {
    "compressed-tensors": ("compressed_tensors", "pip install 'dharma_train[quantize]'"),
    "bitsandbytes": ("bitsandbytes", "pip install 'bitsandbytes>=0.45'"),
}


def quantization_method(path: str | Path) -> str | None:
    """The quant_method a local model folder was saved with; None for full-precision weights or a hub id."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    return (json.loads(config.read_text()).get("quantization_config") or {}).get("quant_method")


def require_loader(path: str | Path) -> str | None:
    """The folder's quant_method, or ModelUnavailableError when the package that loads it is missing."""
    method = quantization_method(path)
    if method is None:
        return None
    if method not in LOADERS:
        raise ModelUnavailableError(f"model folder {path} is quantized with {method!r}, which dharma_train does not "
                                    f"load; known: {sorted(LOADERS)}")
    module, install = LOADERS[method]
    if importlib.util.find_spec(module) is None:
        raise ModelUnavailableError(f"model folder {path} is quantized with {method}; loading it needs the "
                                    f"{module} package: {install}")
    return method


class Int4Linear(torch.nn.Module):
    """A linear layer on 4-bit weights, one scale and zero code per group of inputs. A forward of few rows (a decode
    step) runs on an int4 kernel, which reads a quarter of the bf16 weight bytes; a forward of many rows (prefill)
    runs a bf16 matmul on the weight dequantized for that call alone, where int4 kernels lose to cuBLAS. The
    dequantized weight is transient, not cached: a cached bf16 copy would hold more memory than the bf16 model.

    Routing, set by the backend chooser (`int4_chooser.py`) at the start of generation: rows in `dense_rows` or
    above `dense_above` run dense, the rest on `storage`'s kernel."""

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, zero_code: torch.Tensor, group_size: int,
                 bias: torch.Tensor | None, storage: str = TinyGemmStorage.name):
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.group_size = group_size
        self.compute_dtype = torch.bfloat16 if codes.device.type == "cuda" else scale.dtype
        # [out, groups] each; weight = (code - zero_code) * scale
        self.register_buffer("scale", scale.to(self.compute_dtype))
        self.register_buffer("zero_code", zero_code.to(torch.int8))  # integer zero points, 0..15
        self.register_buffer("bias", None if bias is None else bias.detach().to(self.compute_dtype))
        self.storage = STORAGES[storage](codes, self.scale, self.zero_code, group_size)
        # off CUDA the codes come back only through the kernel (a matmul of identity rows): dearer than the kernel
        self.dense_above: int | None = DEFAULT_DENSE_ABOVE if codes.device.type == "cuda" else None
        self.dense_rows: frozenset[int] = frozenset()
        self.choice = "default routing, not measured"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.compute_dtype)
        if self.runs_dense(flat.shape[0]):
            out = torch.nn.functional.linear(flat, self.dense_weight(), self.bias)
        else:
            out = self.storage.matmul(flat)
            if self.bias is not None:
                out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def runs_dense(self, rows: int) -> bool:
        """Whether a forward of `rows` rows runs on the dequantized weight rather than the int4 kernel."""
        return rows in self.dense_rows or (self.dense_above is not None and rows > self.dense_above)

    def dense_weight(self) -> torch.Tensor:
        """The weight [out, in] in the compute dtype, unpacked from the one stored copy of the codes."""
        return dequantize(self.storage.codes(), self.scale, self.zero_code, self.compute_dtype)

    def use_storage(self, name: str) -> None:
        """Move the codes to another kernel's layout (the old copy is dropped)."""
        if name != self.storage.name:
            self.storage = STORAGES[name](self.storage.codes(), self.scale, self.zero_code, self.group_size)

    def decode_kind(self) -> str:
        """What a decode step of this layer ran on, for `decode_backend`."""
        dense = bool(self.dense_rows) or self.dense_above == 0
        return "int4 bf16-dequantized" if dense else f"int4 {self.storage.name}"

    def prefill_kind(self) -> str:
        """What a forward of many rows ran on, for `decode_backend`."""
        if self.dense_above is None:
            return f"{self.storage.name} at every size"
        return f"bf16-dequantized above {self.dense_above} rows"


DEFAULT_DENSE_ABOVE = 64  # rows; on CUDA where nothing was measured, forwards above it (prefill) run dequantized


def int4_supported(in_features: int, out_features: int, group_size: int) -> bool:
    """Shapes the int4 kernel takes: group sizes 32 to 256, inputs a multiple of 128, outputs of 8."""
    return group_size in (32, 64, 128, 256) and in_features % (INNER_K_TILES * 16) == 0 and out_features % 8 == 0


def quantize_groups(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest symmetric int4 per group (compressed-tensors' W4A16 grid): int8 codes in [-8, 7], scales."""
    rows, columns = weight.shape
    groups = weight.float().reshape(rows, columns // group_size, group_size)
    scale = (groups.abs().amax(dim=-1) / 7.5).clamp(min=1e-8)
    codes = torch.round(groups / scale[..., None]).clamp(-8, 7).to(torch.int8)
    return codes.reshape(rows, columns), scale.to(weight.dtype)


def int4_linear_from_codes(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
                           bias: torch.Tensor | None, device, storage: str = TinyGemmStorage.name) -> Int4Linear:
    """An Int4Linear from compressed-tensors' codes (value = (code - zero_point) * scale, codes in -8..7), on
    `device`: stored as unsigned codes (code + 8) with zero code 8 + zero_point."""
    group_size = codes.shape[1] // scale.shape[1]
    unsigned = (codes.to(device, torch.int16) + 8).to(torch.uint8)
    zero_code = torch.full(scale.shape, 8, dtype=torch.int8, device=device)
    if zero_point is not None:
        zero_code = zero_code + zero_point.to(device, torch.int8)
    return Int4Linear(unsigned, scale.to(device, torch.float32), zero_code, group_size, bias, storage)


def use_int4_kernels(model, folder: str | Path) -> int:
    """Replace each linear saved in compressed-tensors' pack-quantized int4 format with an Int4Linear built from
    the saved codes; returns how many were replaced. Layers the kernel cannot take keep their loaded form."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from safetensors import safe_open

    modules = dict(model.named_modules())
    replaced = 0
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as tensors:
            keys = set(tensors.keys())
            for key in sorted(k for k in keys if k.endswith(".weight_packed")):
                name = key[: -len(".weight_packed")]
                module_name = _loaded_name(name, modules)
                if module_name is None:
                    raise ModelUnavailableError(f"{file}: {key} names no module of the loaded model")
                module = modules[module_name]
                shape = torch.Size(tensors.get_tensor(f"{name}.weight_shape").tolist())
                scale = tensors.get_tensor(f"{name}.weight_scale")
                if not int4_supported(shape[1], shape[0], shape[1] // scale.shape[1]):
                    continue
                codes = unpack_from_int32(tensors.get_tensor(key), 4, shape)
                zero_point = None
                if f"{name}.weight_zero_point" in keys:
                    zero_point = unpack_from_int32(tensors.get_tensor(f"{name}.weight_zero_point"), 4,
                                                   scale.shape, packed_dim=0)
                device = next(module.parameters()).device
                bias = getattr(module, "bias", None)
                set_module(model, module_name, int4_linear_from_codes(codes, scale, zero_point, bias, device))
                replaced += 1
    return replaced


def decode_backend(model) -> str:
    """What the language model's linear layers run on, in a few words: a speed row is only true of its backend
    (a W4A16 folder decodes on an int4 kernel on CUDA, and decompressed to dense weights elsewhere); int4 layers
    add what their prefill ran on."""
    counts: dict[str, int] = {}
    prefill: dict[str, int] = {}
    for name, module in model.named_modules():
        kind = _linear_kind(module)
        if kind is not None and not _in_vision_tower(name):
            counts[kind] = counts.get(kind, 0) + 1
        if isinstance(module, Int4Linear) and not _in_vision_tower(name):
            prefill[module.prefill_kind()] = prefill.get(module.prefill_kind(), 0) + 1
    if len(counts) == 1:
        kind = next(iter(counts))
        config = getattr(model.config, "quantization_config", None)
        method = config.get("quant_method") if isinstance(config, dict) else getattr(config, "quant_method", None)
        method = getattr(method, "value", method)  # transformers may hold it as a str Enum
        described = kind + (f" (decompressed from {method})" if kind.endswith(" dense") and method else "")
    else:
        described = _counted(counts)
    if len(prefill) == 1:
        return f"{described}; int4 prefill: {next(iter(prefill))}"
    return f"{described}; int4 prefill: {_counted(prefill)}" if prefill else described


def int4_choices(model) -> list[str]:
    """Why the int4 layers run where they do: each distinct choice (per layer shape), in model order."""
    return list(dict.fromkeys(m.choice for m in model.modules() if isinstance(m, Int4Linear)))


def _counted(counts: dict[str, int]) -> str:
    """'a 3/4, b 1/4': kinds by how many layers ran on each, most first."""
    total = sum(counts.values())
    return ", ".join(f"{kind} {count}/{total}" for kind, count in sorted(counts.items(), key=lambda kv: -kv[1]))


def _linear_kind(module) -> str | None:
    """'int4 gemlite', 'bitsandbytes nf4', 'bfloat16 dense'...: the backend of one linear layer; None if not one."""
    if isinstance(module, Int4Linear):
        return module.decode_kind()
    if type(module).__name__ in _PACKED_LINEARS:  # bitsandbytes' classes subclass nn.Linear: ask them first
        return _PACKED_LINEARS[type(module).__name__]
    if isinstance(module, torch.nn.Linear) and hasattr(module, "weight_packed"):
        return "compressed-tensors packed, unpacked each call"  # how transformers runs a W4A16 folder off CUDA
    if isinstance(module, torch.nn.Linear):
        return f"{str(module.weight.dtype).removeprefix('torch.')} dense"
    return None


# Quantized linear classes other libraries load, and the backend they decode on.
_PACKED_LINEARS = {"Linear4bit": "bitsandbytes nf4", "Linear8bitLt": "bitsandbytes int8",
                   "CompressedLinear": "compressed-tensors packed"}


def _in_vision_tower(name: str) -> bool:
    return ".visual." in f".{name}." or name.startswith("visual")


def _loaded_name(saved: str, modules: dict) -> str | None:
    """The loaded module a saved name means: the same name, or the one module whose name ends with the saved
    name less its first part (checkpoints say model.layers.N, transformers 5 loads model.language_model.layers.N)."""
    if saved in modules:
        return saved
    tail = "." + saved.partition(".")[2]
    matches = [name for name in modules if name.endswith(tail)]
    return matches[0] if len(matches) == 1 else None


def set_module(model, name: str, module: torch.nn.Module) -> None:
    """Put `module` at the dotted `name` in `model`; public so benchmarks swap layers the way `use_int4_kernels` does."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
