"""The vision stage: pages encoded together equal pages encoded one by one, batches stay under their patch bound."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration

from dharma_train.data.synthetic.generate import generate_pages
from dharma_train.evaluation import vision_stage
from dharma_train.evaluation.vision_stage import VisionFeatures, embed_with_images, encode_pages, image_key
from dharma_train.models.loading import load_processor
from dharma_train.models.tiny import tiny_model_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tiny_model_dir()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    processor = load_processor(str(folder))
    root = tmp_path_factory.mktemp("vision_pages")
    pages = (generate_pages(root / "a", 2, seed=1, width=168, height=224, id_prefix="a").pages
             + generate_pages(root / "b", 2, seed=2).pages)  # two sizes: one varlen batch holds both
    prepared = [dict(processor(images=[Image.open(p.image).convert("RGB")], text=["<|vision_start|><|image_pad|>"
                                                                                   "<|vision_end|>"],
                               return_tensors="pt")) for p in pages]
    return model, pages, prepared


def test_pages_encoded_together_equal_pages_encoded_alone(setup, monkeypatch):
    model, pages, prepared = setup
    keys = [image_key(p.image) for p in pages]
    with torch.no_grad():
        together = encode_pages(model, prepared, keys, VisionFeatures())
        alone = [encode_pages(model, [x], [k], VisionFeatures())[0] for x, k in zip(prepared, keys)]
        monkeypatch.setattr(vision_stage, "MAX_BATCH_PATCHES", 1)  # every page its own call
        bounded = encode_pages(model, prepared, keys, VisionFeatures())
    for a, b, c in zip(together, alone, bounded):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, c)
    assert [f.shape[0] for f in together] == [int(x["image_grid_thw"].prod()) // 4 for x in prepared]


def test_an_image_a_call_holds_several_times_is_encoded_once(setup):
    model, pages, prepared = setup
    keys = [image_key(p.image) for p in pages]
    order = [0, 2, 0, 0, 2, 1]  # GRPO's answers to a page come in one call, each with the page's image
    store = VisionFeatures()
    with torch.no_grad():
        served = encode_pages(model, [prepared[i] for i in order], [keys[i] for i in order], store)
        alone = [encode_pages(model, [prepared[i]], [keys[i]], VisionFeatures())[0] for i in order]
    assert (store.encoded, store.hits) == (3, 3)
    for a, b in zip(served, alone):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batches_hold_at_most_the_bound_and_a_large_page_goes_alone(monkeypatch):
    monkeypatch.setattr(vision_stage, "MAX_BATCH_PATCHES", 10)
    assert vision_stage._batches([0, 1, 2, 3], [4, 5, 12, 3]) == [[0, 1], [2], [3]]


def test_placeholders_take_the_features_in_order(setup):
    model, _, prepared = setup
    ids = prepared[0]["input_ids"]
    count = int((ids == model.config.image_token_id).sum())
    features = [torch.full((count, model.config.text_config.hidden_size), 7.0)]
    with torch.no_grad():
        embeds = embed_with_images(model, ids, features)
        assert torch.all(embeds[ids == model.config.image_token_id] == 7.0)
        with pytest.raises(ValueError, match="image tokens"):
            embed_with_images(model, ids, [features[0][:-1]])


def test_a_rewritten_image_has_a_new_key(tmp_path):
    image = tmp_path / "page.png"
    Image.new("RGB", (8, 8)).save(image)
    before = image_key(image)
    Image.new("RGB", (9, 9), "white").save(image)
    os.utime(image, ns=(before[2] + 10**9, before[2] + 10**9))
    assert image_key(image) != before
