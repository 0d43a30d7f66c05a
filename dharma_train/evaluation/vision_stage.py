"""The vision tower as its own stage of generation, apart from language-model prefill.

The pages about to take slots are encoded together, in varlen batches of up to `MAX_BATCH_PATCHES` patches
whatever their sizes; their prompts are then written into the slots in chunks (`slots.py`). Their features are kept
by image (path, size and modification time) in a `VisionFeatures` store the caller owns, up to a byte budget and on
the host, so a second pass over the same pages with the same model (mining's greedy and sampled passes) does not
encode them again. A store belongs to one model's vision tower: hand a new one to a changed model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

MAX_BATCH_PATCHES = 131_072  # patches per vision call (64 pages of 1,472 merged tokens are 376,832 patches)


@dataclass
class VisionFeatures:
    """Merged image features by image key for one model's vision tower, and how often each page was served."""

    budget_bytes: int = 0  # host memory the kept features may take; 0 keeps nothing (one pass)
    by_image: dict = field(default_factory=dict)
    kept_bytes: int = 0
    encoded: int = 0  # pages whose images went through the tower
    hits: int = 0  # pages served from the store

    def keep(self, key: tuple, features: torch.Tensor) -> None:
        """Keep a page's features on the host while the budget allows; pages past it are encoded again next time."""
        size = features.numel() * features.element_size()
        if self.kept_bytes + size <= self.budget_bytes:
            self.by_image[key] = features.to("cpu", non_blocking=True)
            self.kept_bytes += size


def image_key(path: str | Path) -> tuple:
    """What identifies an image file's content cheaply: its resolved path, size and modification time."""
    stat = os.stat(path)
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


def encode_pages(model, prepared: list[dict], keys: list[tuple], store: VisionFeatures) -> list[torch.Tensor]:
    """Each page's merged image features on the model's device: from the store, or encoded in varlen batches, an
    image the call holds several times (GRPO's answers to one page) once."""
    device = next(model.parameters()).device
    features: dict[int, torch.Tensor] = {}
    missing: dict[tuple, list[int]] = {}  # each image not in the store: the pages that show it
    for index, key in enumerate(keys):
        if key in store.by_image:
            features[index] = store.by_image[key].to(device, non_blocking=True)
            store.hits += 1
        else:
            missing.setdefault(key, []).append(index)
    firsts = [indices[0] for indices in missing.values()]
    for batch in _batches(firsts, [int(prepared[i]["pixel_values"].shape[0]) for i in firsts]):
        pixels = torch.cat([prepared[i]["pixel_values"].to(device, non_blocking=True) for i in batch])
        grids = torch.cat([prepared[i]["image_grid_thw"].to(device, non_blocking=True) for i in batch])
        encoded = model.model.get_image_features(pixels, grids).pooler_output
        for index, page_features in zip(batch, encoded):
            for same in missing[keys[index]]:
                features[same] = page_features
            store.keep(keys[index], page_features)
            store.hits += len(missing[keys[index]]) - 1
        store.encoded += len(batch)
    return [features[index] for index in range(len(keys))]


def _batches(indices: list[int], patches: list[int]) -> list[list[int]]:
    """Consecutive pages in batches of at most MAX_BATCH_PATCHES patches (a larger page goes alone)."""
    batches: list[list[int]] = []
    total = 0
    for index, count in zip(indices, patches):
        if not batches or total + count > MAX_BATCH_PATCHES:
            batches.append([])
            total = 0
        batches[-1].append(index)
        total += count
    return batches


def embed_with_images(model, input_ids: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
    """The prompt's token embeddings with each image placeholder replaced by its page's features, in order."""
    embeds = model.model.get_input_embeddings()(input_ids)
    mask = (input_ids == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
    images = torch.cat(features).to(embeds.device, embeds.dtype)
    if mask.sum() != images.numel():
        raise ValueError(f"the prompts hold {int(mask.sum()) // embeds.shape[-1]} image tokens but the features "
                         f"{images.shape[0]}: the processor and the model disagree on the image size")
    return embeds.masked_scatter(mask, images)
