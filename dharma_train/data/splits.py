"""Train / eval / test splits cut by image hash, so a page never sits in two splits (not even under two ids).

Pages are ordered by a hash of (seed, image hash) and cut at the configured fractions: the same pages and seed
always give the same splits, and adding pages to a source moves few of the existing ones.
"""

from __future__ import annotations

import hashlib

from dharma_train.data.pages import Page
from dharma_train.errors import DataError


def split_pages(pages: list[Page], image_hashes: dict[str, str], fractions: dict[str, float],
                seed: int) -> dict[str, list[Page]]:
    """`fractions` of the pages (e.g. {"eval": 0.1, "test": 0.1}) go to those splits, the rest to "train"."""
    unique = {image_hashes[page.id] for page in pages}
    if len(unique) != len(pages):
        raise DataError("split_pages needs one page per image: deduplicate by image hash first")
    counts = {name: split_size(len(pages), fraction) for name, fraction in fractions.items()}
    if sum(counts.values()) >= len(pages):
        raise DataError(f"cannot split {len(pages)} pages into {counts} and keep any for training")
    shuffled = sorted(range(len(pages)), key=lambda i: _rank(seed, image_hashes[pages[i].id]))
    splits, start = {}, 0
    for name, count in counts.items():
        splits[name] = [pages[i] for i in sorted(shuffled[start:start + count])]  # source order within a split
        start += count
    splits["train"] = [pages[i] for i in sorted(shuffled[start:])]
    return splits


def split_size(total: int, fraction: float) -> int:
    """round(total x fraction), but at least one page for any fraction above zero."""
    return 0 if fraction <= 0 else max(1, round(total * fraction))


def _rank(seed: int, image_hash: str) -> str:
    return hashlib.sha256(f"dharma-split/{seed}/{image_hash}".encode()).hexdigest()
