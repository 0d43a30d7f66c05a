"""The int4 decode path: torch's int4 kernel on compressed-tensors' codes computes the dequantized layer."""

from __future__ import annotations

import pytest
import torch
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from safetensors.torch import save_file
from transformers import Qwen2_5_VLForConditionalGeneration

from dharma_train.errors import ModelUnavailableError
from dharma_train.models.quantized import (Int4Linear, decode_backend, int4_linear_from_codes, int4_supported,
                                           quantize_groups, use_int4_kernels)
from dharma_train.models.tiny import tiny_model_dir


def _dequantize(codes, scale, zero_point=None):
    group = codes.shape[1] // scale.shape[1]
    shift = 0 if zero_point is None else zero_point.float().repeat_interleave(group, dim=1)
    return (codes.float() - shift) * scale.float().repeat_interleave(group, dim=1)


@pytest.mark.parametrize("asymmetric", [False, True])
def test_int4_linear_computes_the_dequantized_layer(asymmetric):
    torch.manual_seed(0)
    codes = torch.randint(-8, 8, (64, 256), dtype=torch.int8)
    scale = torch.rand(64, 8) * 0.1 + 0.01
    zero_point = torch.randint(-8, 8, (64, 8), dtype=torch.int8) if asymmetric else None
    bias = torch.randn(64)
    layer = int4_linear_from_codes(codes, scale, zero_point, bias, "cpu")
    x = torch.randn(3, 5, 256)
    reference = x @ _dequantize(codes, scale, zero_point).t() + bias
    assert isinstance(layer, Int4Linear)
    assert torch.allclose(layer(x), reference, rtol=1e-4, atol=1e-4)


def test_round_to_nearest_codes_reconstruct_the_weight_within_half_a_step():
    weight = torch.randn(32, 128)
    codes, scale = quantize_groups(weight, 32)
    assert codes.dtype == torch.int8 and int(codes.min()) >= -8 and int(codes.max()) <= 7
    assert ((_dequantize(codes, scale) - weight).abs() <= scale.repeat_interleave(32, dim=1) / 2 + 1e-6).all()


def test_int4_kernels_replace_the_saved_layers_of_a_compressed_tensors_folder(tmp_path):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir(), dtype=torch.float32).eval()
    names = ["model.language_model.layers.0.self_attn.q_proj", "model.language_model.layers.1.mlp.down_proj"]
    tensors = {}
    for name in names:
        module = model.get_submodule(name)
        codes, scale = quantize_groups(module.weight.data, 32)
        tensors.update({f"{name}.weight_packed": pack_to_int32(codes, 4), f"{name}.weight_scale": scale,
                        f"{name}.weight_shape": torch.tensor(module.weight.shape)})
        module.weight.data = _dequantize(codes, scale)  # what transformers loads: the decompressed weight
    save_file(tensors, str(tmp_path / "model.safetensors"))
    ids = torch.randint(0, 900, (2, 12))
    with torch.inference_mode():
        expected = model(input_ids=ids).logits
        assert use_int4_kernels(model, tmp_path) == 2
        assert all(isinstance(model.get_submodule(name), Int4Linear) for name in names)
        assert torch.allclose(model(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-4)
    linears = sum(isinstance(m, torch.nn.Linear) for n, m in model.named_modules() if "visual" not in n) + 2
    assert decode_backend(model) == f"float32 dense {linears - 2}/{linears}, int4 kernel 2/{linears}"


def test_the_decode_backend_names_dense_weights_and_what_they_were_decompressed_from():
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir(), dtype=torch.bfloat16)
    assert decode_backend(model) == "bfloat16 dense", "the vision tower's linears are not the decode path"
    model.config.quantization_config = {"quant_method": "compressed-tensors"}  # what a W4A16 folder loads with
    assert decode_backend(model) == "bfloat16 dense (decompressed from compressed-tensors)"


def test_a_saved_layer_the_model_lacks_is_named(tmp_path):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir(), dtype=torch.float32)
    codes, scale = quantize_groups(torch.randn(8, 128), 32)
    save_file({"nowhere.weight_packed": pack_to_int32(codes, 4), "nowhere.weight_scale": scale,
               "nowhere.weight_shape": torch.tensor([8, 128])}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelUnavailableError, match="nowhere.weight_packed"):
        use_int4_kernels(model, tmp_path)


def test_kernel_shape_limits():
    assert int4_supported(2048, 256, 128) and int4_supported(11008, 2048, 128)
    assert not int4_supported(100, 256, 128) and not int4_supported(2048, 256, 100)
