"""A frozen vision tower's output kept per image, so that every epoch after the first skips the tower: on the tiny
reader's CPU steps the tower is a third of the step. Hand-written: no library memoizes a module per item of a packed
batch. Exact up to float rounding: an image's output does not depend on the other images of its batch (each image
attends within itself), only the matmul shapes do."""

from __future__ import annotations

import hashlib
import logging
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)


class FrozenVisionCache:
    """Stands in for the vision tower's forward: images seen before come from the cache, the rest run the tower in
    one batch. Up to `budget_bytes` of outputs are kept on the host; past it, new images run the tower every time."""

    def __init__(self, visual, budget_bytes: int):
        from dharma_train.evaluation.vision_stage import VisionFeatures

        self.visual = visual
        self.tower = visual.forward  # the class's forward, bound: what runs for images not in the cache
        self.merged_per_output = visual.spatial_merge_size ** 2  # patches per output row
        self.store = VisionFeatures(budget_bytes=budget_bytes)  # the generation engine's store: host, bounded

    def __call__(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if any(isinstance(value, torch.Tensor) for value in kwargs.values()):  # precomputed per-batch tensors
            return self.tower(hidden_states, grid_thw=grid_thw, **kwargs)
        patches = grid_thw.prod(-1).tolist()
        rows = torch.split(hidden_states, patches)
        keys = [pixels_key(image, grid) for image, grid in zip(rows, grid_thw)]
        first = {key: i for i, key in reversed(list(enumerate(keys)))}  # an image twice in a batch runs once (DPO)
        missing = sorted(i for key, i in first.items() if key not in self.store.by_image)
        fresh = {}
        if missing:
            out = self.tower(torch.cat([rows[i] for i in missing]), grid_thw=grid_thw[missing], **kwargs)
            sizes = [patches[i] // self.merged_per_output for i in missing]
            for i, output in zip(missing, torch.split(out.pooler_output.detach(), sizes)):
                fresh[keys[i]] = output
                self.store.keep(keys[i], output.clone())  # its own storage, not a view of the batch's output
        self.store.hits += len(keys) - len(missing)
        self.store.encoded += len(missing)
        device = hidden_states.device
        pooled = torch.cat([fresh[key] if key in fresh else self.store.by_image[key].to(device) for key in keys])
        return BaseModelOutputWithPooling(last_hidden_state=None, pooler_output=pooled)

    def summary(self) -> str:
        """What the cache saved, for the stage's log and metrics."""
        store = self.store
        return (f"{store.hits} of {store.hits + store.encoded} images from the cache "
                f"({len(store.by_image)} kept, {store.kept_bytes / 2**20:.1f} MiB)")


def pixels_key(patches: torch.Tensor, grid: torch.Tensor) -> tuple:
    """One image's identity: its grid and a hash of its pixel patches (a changed pixel is a new image)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(patches.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes())
    return tuple(grid.tolist()), digest.digest()


def vision_towers(model) -> list:
    """The Qwen2.5-VL vision towers inside `model` (a peft wrapper or a bare model), each once."""
    towers = []
    for name, module in model.named_modules():
        if name.split(".")[-1] == "visual" and hasattr(module, "spatial_merge_size") and module not in towers:
            towers.append(module)
    return towers


def is_frozen(tower) -> bool:
    """Whether nothing in the tower trains (no gradient in, so its output is a function of the image alone)."""
    return not any(parameter.requires_grad for parameter in tower.parameters())


@contextmanager
def frozen_vision_cached(models: list, budget_bytes: int):
    """Within the block, every frozen vision tower of `models` answers repeated images from its cache; the towers'
    forwards are restored after. Yields the caches (empty where nothing is frozen or the budget is 0)."""
    caches = []
    if budget_bytes > 0:
        for model in models:
            for tower in vision_towers(model):
                if is_frozen(tower) and not isinstance(tower.forward, FrozenVisionCache):
                    cache = FrozenVisionCache(tower, budget_bytes)
                    tower.forward = cache
                    caches.append(cache)
    try:
        yield caches
    finally:
        for cache in caches:
            del cache.visual.forward  # the class's forward again
            if cache.store.hits + cache.store.encoded:
                log.info("frozen vision cache: %s", cache.summary())
