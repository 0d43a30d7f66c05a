"""Int4 storages give back the codes they were built from and multiply like the dequantized weight. The CUDA cases
(torch's real CUDA int4 packing, gemlite) run where there is a GPU (and gemlite); the CPU case runs everywhere."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from dharma_train.models.int4_chooser import choose_int4_backends
from dharma_train.models.int4_layouts import dequantize
from dharma_train.models.int4_storage import GemliteStorage, TinyGemmStorage
from dharma_train.models.quantized import int4_linear_from_codes, quantize_groups

CUDA = torch.cuda.is_available()
GEMLITE = CUDA and importlib.util.find_spec("gemlite") is not None


def _codes(device, rows=256, columns=512, group=128):
    torch.manual_seed(0)
    codes = torch.randint(0, 16, (rows, columns), dtype=torch.uint8, device=device)
    scale = (torch.rand(rows, columns // group, device=device) * 0.02 + 0.001).to(
        torch.bfloat16 if device == "cuda" else torch.float32)
    zero = torch.randint(0, 16, scale.shape, dtype=torch.int8, device=device)
    return codes, scale, zero, group


def _relative(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_cpu_tinygemm_gives_its_codes_back_through_the_kernel():
    codes, scale, zero, group = _codes("cpu", 80, 256, 32)
    storage = TinyGemmStorage(codes, scale, zero, group)
    assert torch.equal(storage.codes(), codes)
    x = torch.randn(3, 256)
    assert torch.allclose(storage.matmul(x), x @ dequantize(codes, scale, zero, torch.float32).t(), atol=1e-4)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", ["tinygemm"] + (["gemlite"] if GEMLITE else []))
def test_cuda_storages_unpack_their_real_layout_and_match_the_dense_weight(name):
    codes, scale, zero, group = _codes("cuda")
    storage = {"tinygemm": TinyGemmStorage, "gemlite": GemliteStorage}[name](codes, scale, zero, group)
    assert torch.equal(storage.codes(), codes)
    weight = dequantize(codes, scale, zero, torch.bfloat16)
    for rows in (1, 8, 64, 1024):
        x = torch.randn(rows, codes.shape[1], device="cuda", dtype=torch.bfloat16)
        assert _relative(storage.matmul(x), x.double() @ weight.double().t()) < 1e-2


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_the_chooser_measures_every_shape_on_cuda_and_keeps_the_outputs():
    model = torch.nn.Sequential()
    for index, (rows, columns) in enumerate([(256, 512), (512, 256)]):
        torch.manual_seed(index)
        codes, scale = quantize_groups(torch.randn(rows, columns, device="cuda") * 0.02, 128)
        model.append(int4_linear_from_codes(codes, scale, None, None, "cuda"))
    x = torch.randn(16, 512, device="cuda", dtype=torch.bfloat16)
    before = model(x)
    reasons = choose_int4_backends(model, 16)
    assert len(reasons) == 2 and all("at 16 rows" in reason for reason in reasons)
    assert _relative(model(x), before) < 1e-2
