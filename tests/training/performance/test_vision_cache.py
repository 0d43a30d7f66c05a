"""A frozen vision tower's cache gives the tower's own outputs, runs each image once, and leaves the model as it was."""

import pytest
import torch

from dharma_train.errors import ConfigError
from dharma_train.models.loading import load_model, load_processor
from dharma_train.training.config import TrainerConfig
from dharma_train.training.model_setup import freeze_vision_tower
from dharma_train.training.performance.config import vision_cache_bytes
from dharma_train.training.performance.vision_cache import FrozenVisionCache, frozen_vision_cached
from dharma_train.typed_config import typed


@pytest.fixture(scope="module")
def batch(tiny_artifact, pages):
    """Four pages as TRL's collator batches them for SFT."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from dharma_train.data.conversation import sft_dataset

    rows = sft_dataset(pages[0], "structured")
    collate = DataCollatorForVisionLanguageModeling(load_processor(tiny_artifact.path), completion_only_loss=True)
    return collate([rows[i] for i in range(4)])


@pytest.fixture
def frozen(tiny_artifact):
    model = load_model(tiny_artifact).train()
    assert freeze_vision_tower(model) > 0
    return model


def _tower_runs(model) -> list[int]:
    """Patch rows the tower's patch embedding sees, one entry per run of the tower."""
    seen = []
    model.model.visual.patch_embed.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    return seen


def test_cached_outputs_are_the_towers_and_repeated_images_skip_it(frozen, batch):
    expected = frozen(**batch).loss
    runs = _tower_runs(frozen)
    with frozen_vision_cached([frozen], 2**30) as caches:
        assert len(caches) == 1 and isinstance(frozen.model.visual.forward, FrozenVisionCache)
        first = frozen(**batch)
        second = frozen(**batch)
        first.loss.backward()  # the language model still trains through cached image features
    assert len(runs) == 1, "the second forward took every image from the cache"
    torch.testing.assert_close(first.loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second.loss, expected, rtol=1e-5, atol=1e-6)
    assert caches[0].store.hits == 4 and caches[0].store.encoded == 4
    assert "4 of 8 images from the cache" in caches[0].summary()
    assert "forward" not in vars(frozen.model.visual), "the tower's own forward is back after the block"
    assert any(p.grad is not None for p in frozen.model.language_model.parameters())


def test_an_image_twice_in_a_batch_runs_once_and_a_new_image_runs(frozen, batch):
    runs = _tower_runs(frozen)
    pixels, grid = batch["pixel_values"], batch["image_grid_thw"]
    per_image = int(grid[0].prod())
    one = pixels[:per_image]
    with frozen_vision_cached([frozen], 2**30):
        twice = frozen.model.visual(torch.cat([one, one]), grid_thw=grid[[0, 0]]).pooler_output
        assert runs == [per_image], "the duplicate ran once"
        changed = one.clone()
        changed[0, 0] += 1.0
        frozen.model.visual(changed, grid_thw=grid[[0]])
        assert runs == [per_image, per_image], "a changed pixel is a new image"
    alone = frozen.model.visual(one, grid_thw=grid[[0]]).pooler_output
    torch.testing.assert_close(twice, torch.cat([alone, alone]), rtol=1e-5, atol=1e-6)


def test_a_tower_that_trains_or_a_zero_budget_gets_no_cache(tiny_artifact, frozen, batch):
    training = load_model(tiny_artifact).train()
    with frozen_vision_cached([training], 2**30) as caches:
        assert caches == [] and "forward" not in vars(training.model.visual)
    with frozen_vision_cached([frozen], 0) as caches:
        assert caches == []


def test_past_its_budget_the_cache_keeps_nothing_more(frozen, batch):
    runs = _tower_runs(frozen)
    with frozen_vision_cached([frozen], 1) as caches:  # one byte: no image's output fits
        frozen(**batch)
        frozen(**batch)
    assert len(runs) == 2 and caches[0].store.by_image == {} and caches[0].store.kept_bytes == 0


def test_the_budget_setting():
    assert vision_cache_bytes("auto", "cpu") == 2**30 and vision_cache_bytes("auto", "cuda") == 0
    assert vision_cache_bytes("0", "cpu") == 0 and vision_cache_bytes("0.5", "cuda") == 2**29
    assert typed("trainer", TrainerConfig, {"performance": {"frozen_vision_cache_gib": 2}}).performance \
        .frozen_vision_cache_gib == "2"
    for bad in ("lots", -1):
        with pytest.raises(ConfigError, match="frozen_vision_cache_gib"):
            typed("trainer", TrainerConfig, {"performance": {"frozen_vision_cache_gib": bad}})
