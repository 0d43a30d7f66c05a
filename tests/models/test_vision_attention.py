import copy

import pytest
import torch

from dharma_train.models.config import ModelConfig
from dharma_train.models.loading import load_model, load_processor
from dharma_train.models.varlen import attend, max_seqlen
from dharma_train.models.vision_attention import use_varlen_vision_attention, varlen_available


@pytest.fixture(scope="module")
def image_inputs(tiny_artifact, pages):
    from PIL import Image

    images = [Image.open(pages[1].pages[i].image).convert("RGB") for i in range(2)]
    inputs = load_processor(tiny_artifact.path).image_processor(images=images, return_tensors="pt")
    return inputs["pixel_values"], inputs["image_grid_thw"]


def test_every_vision_layer_is_patched_once(tiny_artifact):
    patched = load_model(tiny_artifact, settings=ModelConfig(vision_attention="varlen"))
    depth = patched.config.vision_config.depth
    assert use_varlen_vision_attention(patched) == 0  # already patched: idempotent
    assert sum(hasattr(m, "_dharma_stock_forward") for m in patched.modules()) == (depth if varlen_available() else 0)


@pytest.mark.skipif(not varlen_available(), reason="PyTorch without torch.nn.attention.varlen")
def test_patched_vision_tower_matches_stock_forward_and_backward_in_fp32(tiny_artifact, image_inputs):
    """The patched forward's own code (qkv, rotary, all windows in one call, proj) against transformers' loop."""
    pixels, grid = image_inputs
    stock = load_model(tiny_artifact, settings=ModelConfig(vision_attention="stock")).model.visual
    patched = copy.deepcopy(stock)
    use_varlen_vision_attention(patched)
    outputs = []
    for tower in (stock, patched):
        tower.zero_grad()
        out = tower(pixels, grid_thw=grid)
        out = getattr(out, "pooler_output", out)
        out.square().sum().backward()
        outputs.append((out.detach(), {n: p.grad.clone() for n, p in tower.named_parameters()}))
    (a, grads_a), (b, grads_b) = outputs
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("causal", [False, True])
def test_attend_keeps_sequences_apart_and_handles_fewer_key_heads(causal):
    torch.manual_seed(0)
    cu_seqlens = torch.tensor([0, 5, 6, 13], dtype=torch.int32)
    query, key, value = torch.randn(13, 4, 8), torch.randn(13, 2, 8), torch.randn(13, 2, 8)
    out = attend(query, key, value, cu_seqlens, max_seqlen(cu_seqlens), 8 ** -0.5, causal)
    for start, end in ((0, 5), (5, 6), (6, 13)):
        k, v = (t[start:end].repeat_interleave(2, dim=1).transpose(0, 1) for t in (key, value))
        q = query[start:end].transpose(0, 1)
        scores = q @ k.transpose(1, 2) * 8 ** -0.5
        if causal:
            scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
        expected = (scores.softmax(-1) @ v).transpose(0, 1)
        torch.testing.assert_close(out[start:end], expected, rtol=1e-5, atol=1e-6)


def test_longest_sequence_is_computed_once_per_boundaries_tensor():
    cu_seqlens = torch.tensor([0, 3, 10], dtype=torch.int32)
    assert max_seqlen(cu_seqlens) == 7
    cu_seqlens[2] = 100  # a cached answer is not recomputed
    assert max_seqlen(cu_seqlens) == 7


def test_fp32_on_a_gpu_is_named_as_the_slow_path_once(caplog):
    """The per-window loop is what fp32 on CUDA gets; the warning says so once per dtype, not once per layer."""
    import logging

    from dharma_train.models import varlen

    varlen._warn_slow_path_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="dharma_train.models.varlen"):
        for _ in range(3):
            varlen._warn_slow_path_once(torch.float32)
    warnings = [r.getMessage() for r in caplog.records if r.name == "dharma_train.models.varlen"]
    assert len(warnings) == 1 and "float32" in warnings[0] and "trainer.precision" in warnings[0]


def test_fp32_queries_under_half_precision_autocast_run_in_the_autocast_dtype():
    """Full fine-tuning keeps fp32 master weights under bf16 autocast; the rotary embedding leaves queries in fp32.
    Like autocast's sdpa, attention then runs in bf16, so those batches still take the one-launch kernel on CUDA."""
    from dharma_train.models.varlen import compute_dtype

    query = torch.zeros(4, 2, 8)
    assert compute_dtype(query) == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert compute_dtype(query) == torch.bfloat16
        assert compute_dtype(query.to(torch.float16)) == torch.float16  # already half: kept
    with torch.autocast("cpu", enabled=False):
        assert compute_dtype(query) == torch.float32
