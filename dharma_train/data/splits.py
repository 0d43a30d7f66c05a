"""Train / eval / test splits cut by image hash, so a page never sits in two splits (not even under two ids).

Pages are ordered by a hash of (seed, image hash) and cut at the configured fractions: the same pages and seed
always give the same splits, and adding pages to a source moves few of the existing ones.
"""

from __future__ import annotations

import hashlib
import re

from dharma_train.data.pages import Page, PageSet
from dharma_train.errors import DataError

STORED_NAME = re.compile(r"[0-9a-f]{64}")  # a loaded image stored under the hash of its source bytes (images.py)


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


def image_identities(pages: PageSet, split: str) -> dict[str, str]:
    """Each page image's identity as the loader knows it (the hash of the source bytes: a stored image's name, or
    the bytes of an image used in place), mapped to `split`: what a stage's own pages and given pairs are checked
    against, so a training row that names an evaluation image is skipped as a leak."""
    identities = {}
    for page in pages:
        stored = STORED_NAME.match(page.image.name)
        if stored:
            identities[stored.group()] = split
        identities[hashlib.sha256(page.image.read_bytes()).hexdigest()] = split
    return identities
