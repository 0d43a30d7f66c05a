"""The int4 layer: torch's int4 kernel on compressed-tensors' codes computes the dequantized layer, and a forward of
many rows on the dequantized weight computes the same, down to greedy generation through the tiny model."""

from __future__ import annotations

import pytest
import torch
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from safetensors.torch import save_file
from transformers import Qwen2_5_VLForConditionalGeneration

from dharma_train.data.synthetic.generate import generate_pages
from dharma_train.errors import ModelUnavailableError
from dharma_train.evaluation.generate import generate
from dharma_train.models.loading import load_processor
from dharma_train.models.quantized import (DEFAULT_DENSE_ABOVE, Int4Linear, decode_backend, int4_linear_from_codes,
                                           int4_supported, quantize_groups, set_module, use_int4_kernels)
from dharma_train.models.tiny import tiny_model_dir
from tests.tiny_models import perturbed_tiny_model


def _random_codes(seed: int, asymmetric: bool):
    """A 64 x 256 layer's int4 codes, scales of groups of 32 and (asymmetric) zero points, seeded."""
    torch.manual_seed(seed)
    codes = torch.randint(-8, 8, (64, 256), dtype=torch.int8)
    scale = torch.rand(64, 8) * 0.1 + 0.01
    zero_point = torch.randint(-8, 8, (64, 8), dtype=torch.int8) if asymmetric else None
    return codes, scale, zero_point


def _dequantize(codes, scale, zero_point=None):
    group = codes.shape[1] // scale.shape[1]
    shift = 0 if zero_point is None else zero_point.float().repeat_interleave(group, dim=1)
    return (codes.float() - shift) * scale.float().repeat_interleave(group, dim=1)


@pytest.mark.parametrize("asymmetric", [False, True])
def test_int4_linear_computes_the_dequantized_layer(asymmetric):
    codes, scale, zero_point = _random_codes(0, asymmetric)
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
    assert decode_backend(model) == (f"float32 dense {linears - 2}/{linears}, int4 tinygemm 2/{linears}; "
                                     "int4 prefill: tinygemm at every size")


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


@pytest.mark.parametrize("asymmetric", [False, True])
def test_a_forward_of_many_rows_on_the_dequantized_weight_equals_the_int4_kernel(asymmetric):
    codes, scale, zero_point = _random_codes(2, asymmetric)
    layer = int4_linear_from_codes(codes, scale, zero_point, torch.randn(64), "cpu")
    assert layer.dense_above is None, "on the CPU the kernel runs every size by default"
    layer.dense_above = DEFAULT_DENSE_ABOVE  # the CUDA default
    x = torch.randn(4, 50, 256)  # 200 rows: above the threshold
    assert layer.runs_dense(200) and not layer.runs_dense(8)
    dense = layer(x)
    layer.dense_above = None
    kernel = layer(x)
    assert not layer.runs_dense(200)
    assert torch.allclose(dense, kernel, rtol=1e-4, atol=1e-4)
    assert torch.equal(layer.dense_weight(), _dequantize(codes, scale, zero_point).to(layer.compute_dtype))


def test_rows_listed_as_dense_run_dense_below_the_threshold():
    layer = int4_linear_from_codes(*quantize_groups(torch.randn(16, 128), 32), None, None, "cpu")
    layer.dense_rows = frozenset({8})
    assert layer.runs_dense(8) and not layer.runs_dense(7)
    assert layer.decode_kind() == "int4 bf16-dequantized"
    layer.dense_above = None
    assert layer.prefill_kind() == "tinygemm at every size"


def test_moving_codes_to_a_new_storage_keeps_them():
    torch.manual_seed(3)
    codes, scale = quantize_groups(torch.randn(32, 256), 64)
    layer = int4_linear_from_codes(codes, scale, None, None, "cpu")
    before = layer.storage
    layer.storage = type(before)(before.codes(), layer.scale, layer.zero_code, layer.group_size)  # a rebuilt copy
    assert layer.storage is not before
    assert torch.equal(layer.storage.codes(), before.codes())
    x = torch.randn(3, 256)
    assert torch.equal(layer.storage.matmul(x), before.matmul(x))


def to_int4(model, group_size: int = 32) -> list[Int4Linear]:
    """Every language linear the kernel takes, as an Int4Linear on its round-to-nearest codes."""
    layers = []
    for name, module in list(model.model.language_model.named_modules()):
        if isinstance(module, torch.nn.Linear) and int4_supported(module.in_features, module.out_features, group_size):
            codes, scale = quantize_groups(module.weight.data, group_size)
            layers.append(int4_linear_from_codes(codes, scale, None, module.bias, "cpu"))
            set_module(model.model.language_model, name, layers[-1])
    return layers


@pytest.fixture(scope="module")
def int4_tiny(tmp_path_factory):
    """The tiny model with perturbed weights (a plain random init repeats one token), its language linears int4,
    and pages of two sizes."""
    folder = tiny_model_dir()
    model = perturbed_tiny_model()
    layers = to_int4(model)
    root = tmp_path_factory.mktemp("int4_pages")
    pages = (generate_pages(root / "small", 2, seed=5, width=168, height=224, id_prefix="small").pages
             + generate_pages(root / "large", 2, seed=3).pages)
    return model, load_processor(str(folder)), pages, layers


@pytest.mark.parametrize("engine", ["generate", "continuous"])
def test_greedy_generation_with_dense_prefill_equals_the_int4_kernel_alone(int4_tiny, engine):
    model, processor, pages, layers = int4_tiny
    assert layers and not any(isinstance(m, torch.nn.Linear) for m in model.model.language_model.modules()), \
        "every language linear is int4"

    def answers(dense_above):
        for layer in layers:
            layer.dense_above = dense_above
        generations, _ = generate(model, processor, pages, "structured", 16, 2, engine=engine, progress=False)
        return [g.text for g in generations]

    calls = []
    hooks = [layer.register_forward_pre_hook(lambda module, args: calls.append(module.runs_dense(
        args[0].reshape(-1, module.in_features).shape[0]))) for layer in layers[:1]]
    try:
        switched = answers(4)  # prefill (a prompt's rows) dense, decode steps of 2 rows on the kernel
    finally:
        for hook in hooks:
            hook.remove()
    assert True in calls and False in calls, "both paths ran"
    assert switched == answers(None)
    assert len(set(switched)) > 1, "the answers differ from page to page"
