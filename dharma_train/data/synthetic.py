"""Synthetic page sets: fake Portuguese answers drawn onto page images, reproducible byte for byte from a seed.

Every page has its own random stream derived from (seed, page index), so page 7 is the same page whether 10 or
10 000 are generated, and a set can be extended or regenerated in part without changing the others.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path

from faker import Faker
from tqdm import tqdm

from dharma_train.data.pages import Page, PageSet
from dharma_train.data.render import render_page
from dharma_train.data.text import DEFAULT_MAX_WORDS, FAMILIES, make_answer
from dharma_train.files import atomic_path

TASKS = ("structured", "plain")
PNG_COMPRESS_LEVEL = 1  # noisy pages barely compress: level 1 is 4x faster than the default 6, files no larger
PROGRESS_BAR_FROM = 200  # below this a set takes about a second and a bar is only noise


def generate_pages(out_dir: str | Path, n: int, seed: int, width: int = 224, height: int = 308,
                   families: Sequence[str] = FAMILIES, task: str = "structured", id_prefix: str = "page",
                   degrade: bool = True, max_words: int = DEFAULT_MAX_WORDS) -> PageSet:
    """Write `n` pages to `out_dir/images/<id>.png` plus `out_dir/pages.jsonl`; families take turns in order."""
    _check_arguments(n, families, task)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    faker = Faker("pt_BR")
    digits = max(5, len(str(n - 1)))
    pages = [
        _write_page(out_dir, f"{id_prefix}-{index:0{digits}d}", families[index % len(families)],
                    page_seed(seed, index), faker, width=width, height=height, task=task,
                    degrade=degrade, max_words=max_words)
        for index in tqdm(range(n), desc="synthetic pages", disable=n < PROGRESS_BAR_FROM)
    ]
    page_set = PageSet(root=out_dir, pages=pages)
    page_set.save()
    return page_set


def generate_splits(out_dir: str | Path, n_train: int, n_eval: int, seed: int, **kw) -> tuple[PageSet, PageSet]:
    """`out_dir/train` and `out_dir/eval`; eval's seed is derived from `seed`, so no eval page repeats a train page."""
    out_dir = Path(out_dir)
    train = generate_pages(out_dir / "train", n_train, seed, id_prefix="train", **kw)
    evaluation = generate_pages(out_dir / "eval", n_eval, eval_seed(seed), id_prefix="eval", **kw)
    return train, evaluation


def page_seed(seed: int, index: int) -> str:
    """The seed of one page; Python seeds a Random from a str through SHA-512, so this is stable across runs."""
    return f"dharma-synthetic/{seed}/{index}"


def eval_seed(seed: int) -> int:
    """A hash of the train seed rather than seed + 1, so the eval set of run 0 is not the train set of run 1."""
    return int.from_bytes(hashlib.sha256(f"dharma-eval/{seed}".encode()).digest()[:8], "big")


def _check_arguments(n: int, families: Sequence[str], task: str) -> None:
    """Fail before writing anything: a page set on disk must be loadable by load_pages."""
    if n < 1:
        raise ValueError(f"n must be at least 1 (load_pages refuses an empty set), got {n}")
    if isinstance(families, str) or not families:
        raise ValueError(f"families must be a non-empty sequence of names, got {families!r}")
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown page famil(ies) {unknown}; expected some of {list(FAMILIES)}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")


def _write_page(out_dir: Path, page_id: str, family: str, seed: str, faker: Faker, *, width: int, height: int,
                task: str, degrade: bool, max_words: int) -> Page:
    """Answer first, then the image from the same stream; the PNG goes to disk before the row is recorded."""
    rng = random.Random(seed)
    faker.seed_instance(seed)
    answer = make_answer(rng, faker, family, max_words=max_words)
    image = render_page(answer, family, width, height, rng, degrade=degrade)
    path = out_dir / "images" / f"{page_id}.png"
    with atomic_path(path, sync=False) as tmp:  # a run killed mid-write never leaves a truncated image
        image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return Page(id=page_id, image=path, answer=answer, family=family, task=task)
