"""scripts/experiments/tiny_reader/pretrain_reader.py: its device-side patches are the image processor's, and a short curriculum runs."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dharma_train.models.tiny import TINY_SHAPE, build_tiny_processor
from scripts.experiments.tiny_reader import pretrain_reader

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["glyph", "chars", "words", "lines"])
def test_device_patches_and_prompt_are_what_the_processor_gives_the_model(kind):
    processor = build_tiny_processor(TINY_SHAPE)
    rng = random.Random(0)
    image, answer = pretrain_reader.draw_sample(kind, rng, ["palavra", "página"], 0.5, None)
    batches = pretrain_reader.DeviceBatches(processor, torch.device("cpu"))
    pixels, ids = pretrain_reader.Tokenize(processor.tokenizer)([(image, answer)])
    batch = batches(pixels, ids)
    prompt = processor.apply_chat_template(pretrain_reader.prompt_messages("plain"), add_generation_prompt=True)
    stock = processor(text=[prompt + answer + "<|im_end|>"], images=[image.convert("L")], return_tensors="pt")
    assert torch.equal(batch["input_ids"], stock["input_ids"])
    assert torch.allclose(batch["pixel_values"], stock["pixel_values"], atol=1e-5)
    assert torch.equal(batch["image_grid_thw"], stock["image_grid_thw"])
    assert torch.equal(batch["mm_token_type_ids"], stock["mm_token_type_ids"]), "3D M-RoPE positions, as generate"
    labelled = batch["labels"][0][batch["labels"][0] != -100]
    assert processor.tokenizer.decode(labelled) == answer + "<|im_end|>", "labels cover the answer and its end only"


def test_check_patches_refuses_patches_the_model_would_not_see():
    processor = build_tiny_processor(TINY_SHAPE)
    batches = pretrain_reader.DeviceBatches(processor, torch.device("cpu"))
    batches.std = batches.std * 2  # a wrong normalization
    image = pretrain_reader.draw_text(["abc"], pretrain_reader.STRIP, (18, 18), random.Random(0))
    with pytest.raises(RuntimeError, match="differ from the image processor"):
        pretrain_reader.check_patches(batches, processor, image)


@pytest.mark.slow
def test_a_short_curriculum_writes_its_curve_and_a_model_that_loads(tmp_path, tiny_cache):
    out = tmp_path / "reader"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.experiments.tiny_reader.pretrain_reader", "--out", str(out), "--phases", "chars:3,lines:2",
         "--batch", "4", "--eval-pages", "1", "--eval-crops", "2", "--workers", "0", "--warmup", "2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={"DHARMA_TRAIN_CACHE": str(tiny_cache), "PATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    curve = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    assert [(point["step"], point["phase"]) for point in curve] == [(3, "chars"), (5, "lines")]
    assert all(0 <= point[f"cer_{family}"] <= 1 for point in curve for family in ("printed", "handwritten", "legal"))
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out / "model")
    assert sum(p.numel() for p in model.parameters()) == json.loads((out / "run.json").read_text())["parameters"]
    assert np.isfinite(curve[-1]["loss"])


def test_training_batches_give_the_model_the_logits_the_processors_inputs_give_it():
    """The positions training uses are the ones inference uses (M-RoPE over the image, not 1D text positions)."""
    from dharma_train.models.tiny import build_tiny_model

    processor = build_tiny_processor(TINY_SHAPE)
    model = build_tiny_model(processor.tokenizer, TINY_SHAPE).eval()
    image, answer = pretrain_reader.draw_sample("lines", random.Random(3), ["palavra", "página"], 0.5, None)
    batch = pretrain_reader.DeviceBatches(processor, torch.device("cpu"))(
        *pretrain_reader.Tokenize(processor.tokenizer)([(image, answer)]))
    prompt = processor.apply_chat_template(pretrain_reader.prompt_messages("plain"), add_generation_prompt=True)
    stock = processor(text=[prompt + answer + "<|im_end|>"], images=[image.convert("L")], return_tensors="pt")
    with torch.no_grad():
        ours = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        theirs = model(**stock).logits
    assert torch.allclose(ours, theirs, atol=1e-4)
