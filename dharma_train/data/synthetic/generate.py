"""Synthetic page sets: fake answers drawn onto page images, reproducible byte for byte from a seed.

Every page has its own random stream derived from (seed, page index), so page 7 is the same page whether 10 or
10 000 are generated, whatever the number of worker processes, and a set can be extended or regenerated in part
without changing the others.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import random
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from faker import Faker
from tqdm import tqdm

from dharma_train.data.pages import Page, PageSet
from dharma_train.data.prompts import TASKS
from dharma_train.data.schema import PageAnswer
from dharma_train.data.synthetic.layout import PageOverflow
from dharma_train.data.synthetic.multilingual import GENERAL_FAMILY, make_general_answer
from dharma_train.data.synthetic.png import write_png
from dharma_train.data.synthetic.render import RenderedPage, render_page
from dharma_train.data.synthetic.text import DEFAULT_MAX_WORDS, FAMILIES, make_answer

ALL_FAMILIES = (*FAMILIES, GENERAL_FAMILY)
IMAGE_FORMATS = ("png", "jpg")
JPEG_QUALITY = 92
PROGRESS_BAR_FROM = 200  # below this a set takes about a second and a bar is only noise
A4_WIDTH_PER_HEIGHT = 210 / 297
WORDS_PER_PIXEL_OF_HEIGHT = 0.2


@dataclass(frozen=True)
class PageJob:
    """Everything one page needs, small enough to send to a worker process."""

    out_dir: Path
    page_id: str
    family: str
    seed: str
    width: int
    height: int
    task: str
    degrade: bool
    max_words: int
    image_format: str
    min_body_px: int = 0


def page_size(long_side: int) -> tuple[int, int]:
    """(width, height) of a portrait A4 page (1 : 1.414) whose long side is `long_side` pixels."""
    return round(long_side * A4_WIDTH_PER_HEIGHT), long_side


def default_max_words(long_side: int) -> int:
    """A word budget that fills a page of this size at a readable font: 40 on thumbnails, ~200 at 1024 px."""
    return max(DEFAULT_MAX_WORDS, round(long_side * WORDS_PER_PIXEL_OF_HEIGHT))


def default_families(task: str) -> tuple[str, ...]:
    """The general-OCR task reads mixed-language pages; the others the three Portuguese families."""
    return (GENERAL_FAMILY,) if task == "general" else FAMILIES


def generate_pages(out_dir: str | Path, n: int, seed: int, width: int = 224, height: int = 308,
                   families: Sequence[str] | None = None, task: str = "structured", id_prefix: str = "page",
                   degrade: bool = True, max_words: int = DEFAULT_MAX_WORDS, workers: int = 1,
                   image_format: str = "png", progress: bool | None = None,
                   min_body_px: int | Mapping[str, int] = 0) -> PageSet:
    """Write `n` pages to `out_dir/images/<id>.<format>` plus `out_dir/pages.jsonl`; families take turns in order.

    `workers` > 1 draws pages in that many processes; the files are the same bytes as with one. `min_body_px`
    raises the body type to at least that size, one for all or one per family (readable pages, `readable.py`);
    0 keeps the default geometry.
    """
    families = default_families(task) if families is None else families
    _check_arguments(n, families, task, width, height, max_words, workers, image_format)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    digits = max(5, len(str(n - 1)))
    jobs = [PageJob(out_dir, f"{id_prefix}-{index:0{digits}d}", families[index % len(families)],
                    page_seed(seed, index), width, height, task, degrade, max_words, image_format,
                    body_floor(min_body_px, families[index % len(families)]))
            for index in range(n)]
    show = n >= PROGRESS_BAR_FROM if progress is None else progress
    bar = tqdm(total=n, desc=f"synthetic pages ({out_dir.name})", disable=not show, unit="page")
    if workers == 1:
        pages = [_progress(write_page(job), bar) for job in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=_worker_context()) as pool:
            chunk = max(1, min(32, n // (workers * 8)))
            pages = [_progress(page, bar) for page in pool.map(write_page, jobs, chunksize=chunk)]
    bar.close()
    page_set = PageSet(root=out_dir, pages=pages)
    page_set.save()
    return page_set


def generate_splits(out_dir: str | Path, n_train: int, n_eval: int, seed: int, **kw) -> tuple[PageSet, PageSet]:
    """`out_dir/train` and `out_dir/eval`; eval's seed is derived from `seed`, so no eval page repeats a train page."""
    out_dir = Path(out_dir)
    train = generate_pages(out_dir / "train", n_train, seed, id_prefix="train", **kw)
    evaluation = generate_pages(out_dir / "eval", n_eval, eval_seed(seed), id_prefix="eval", **kw)
    return train, evaluation


def body_floor(min_body_px: int | Mapping[str, int], family: str) -> int:
    """The body-type floor of one family: a single number for all, or a family's entry (0 where none)."""
    return min_body_px if isinstance(min_body_px, int) else min_body_px.get(family, 0)


def page_seed(seed: int, index: int) -> str:
    """The seed of one page; Python seeds a Random from a str through SHA-512, so this is stable across runs."""
    return f"dharma-synthetic/{seed}/{index}"


def eval_seed(seed: int) -> int:
    """A hash of the train seed rather than seed + 1, so the eval set of run 0 is not the train set of run 1."""
    return named_seed(seed, "eval")


def named_seed(seed: int, name: str) -> int:
    """The seed of another set drawn beside the training pages (eval, general...): unrelated to theirs."""
    return int.from_bytes(hashlib.sha256(f"dharma-{name}/{seed}".encode()).digest()[:8], "big")


def write_page(job: PageJob) -> Page:
    """Answer first, then the image from the same stream; the image goes to disk before the row is recorded.

    A page whose text cannot fit even at the smallest font is drawn again from a derived seed with two thirds of
    the words, so a large `max_words` fills pages without ever cutting text the answer names.
    """
    rendered = render_fitting_page(job.seed, job.family, job.width, job.height, job.max_words, job.degrade,
                                   job.min_body_px)
    path = job.out_dir / "images" / f"{job.page_id}.{job.image_format}"
    if job.image_format == "png":
        write_png(rendered.image, path)
    else:
        rendered.image.save(path, format="JPEG", quality=JPEG_QUALITY)
    return Page(id=job.page_id, image=path, answer=rendered.answer, family=job.family, task=job.task)


def render_fitting_page(seed: str, family: str, width: int, height: int, max_words: int, degrade: bool = True,
                        min_body_px: int = 0) -> RenderedPage:
    """The page of `seed`, drawn again from a derived seed with two thirds of the words while its text overflows."""
    attempt = 0
    while True:
        page_seed_now = seed if attempt == 0 else f"{seed}/retry{attempt}"
        rng = random.Random(page_seed_now)
        answer = make_page_answer(rng, family, max_words, page_seed_now)
        try:
            return render_page(answer, family, width, height, rng, degrade=degrade, min_body_px=min_body_px)
        except PageOverflow:
            if max_words == 1:
                raise
            max_words, attempt = max(1, max_words * 2 // 3), attempt + 1


def make_page_answer(rng: random.Random, family: str, max_words: int, seed: str) -> PageAnswer:
    """The ground truth of one page of any family; the Portuguese Faker is reseeded with the page's seed."""
    if family == GENERAL_FAMILY:
        return make_general_answer(rng, max_words)
    faker = _portuguese_faker()
    faker.seed_instance(seed)
    return make_answer(rng, faker, family, max_words=max_words)


@lru_cache(maxsize=1)
def _portuguese_faker() -> Faker:
    """One per process: building a Faker takes tens of milliseconds, reseeding it almost nothing."""
    return Faker("pt_BR")


def _worker_context():
    """Workers forked from a server that imported this module once (importing dharma_train costs a second,
    torch included), where the platform has one; fresh interpreters otherwise. Never a fork of the caller,
    whose torch threads a fork could deadlock."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _progress(page: Page, bar: tqdm) -> Page:
    bar.update(1)
    return page


def _check_arguments(n: int, families: Sequence[str], task: str, width: int, height: int, max_words: int,
                     workers: int, image_format: str) -> None:
    """Fail before writing anything: a page set on disk must be loadable by load_pages."""
    if n < 1:
        raise ValueError(f"n must be at least 1 (load_pages refuses an empty set), got {n}")
    if isinstance(families, str) or not families:
        raise ValueError(f"families must be a non-empty sequence of names, got {families!r}")
    unknown = sorted(set(families) - set(ALL_FAMILIES))
    if unknown:
        raise ValueError(f"unknown page famil(ies) {unknown}; expected some of {list(ALL_FAMILIES)}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if width < 56 or height < 56:
        raise ValueError(f"pages must be at least 56x56 pixels, got {width}x{height}")
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {list(IMAGE_FORMATS)}, got {image_format!r}")
