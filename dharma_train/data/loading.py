"""Sources to PageSets: read every row, check it, fix what can be fixed, skip and report the rest.

`load_source` loads one source and `load_page_set` saves one as a page folder; `load_splits` turns a run's `data`
config into train/eval/test PageSets under `output_dir/data/loaded/`, with no image in two splits, and saves the
LoadReport as `output_dir/data/load_report.json`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from dharma_train.data.config import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SKIPPED_SHARE, DEFAULT_PDF_DPI, DataConfig
from dharma_train.data.images import PreparedImage, image_bytes, page_number, prepare_image
from dharma_train.data.lengths import LengthBound
from dharma_train.data.pages import Page, PageSet
from dharma_train.data.sources import RawRow, open_source
from dharma_train.data.splits import split_pages
from dharma_train.data.text_hygiene import merge_fixes
from dharma_train.data.validation import LoadReport, RowProblem, RowText, SourceReport, read_row_text
from dharma_train.errors import DataError
from dharma_train.files import write_json_atomically

log = logging.getLogger(__name__)

SPLITS = ("train", "eval", "test")
EVALUATED_SPLITS = ("eval", "test")
LOADED_DIR = "loaded"  # under output_dir/data, beside the generated train/ and eval/ folders
REPORT_FILE = "load_report.json"
CHECK_THREADS = min(8, os.cpu_count() or 1)
I = TypeVar("I")
T = TypeVar("T")


@dataclass
class LoadedSource:
    """The pages a source gave, the hash of each page's image bytes (by page id), and what became of every row."""

    pages: list[Page]
    image_hashes: dict[str, str]
    report: SourceReport
    holders: dict[str, str] = field(default_factory=dict)  # image hash -> where its page came from


def load_source(location: str | Path, images_dir: str | Path, *, format: str = "auto", strict: bool = False,
                max_pixels: int = DEFAULT_MAX_PIXELS, split: str = "train",
                taken: dict[str, str] | None = None, pdf_dpi: int = DEFAULT_PDF_DPI,
                bounds: tuple[LengthBound, ...] = ()) -> LoadedSource:
    """Every row of one source checked; images that arrive as bytes or need fixing, single pages of multi-page
    files and rendered PDF pages (at `pdf_dpi`, within `max_pixels`) are written to `images_dir`.

    `taken` maps image hashes already in other splits to their split's name: such rows are skipped (or, strict,
    fail) so no page leaks across splits. A row longer than any of `bounds` (one per model that trains on it) is
    skipped as `overlong`. With `strict`, the first bad row raises DataError naming it.
    """
    source = open_source(location, format)
    report = SourceReport(split=split, source=source.location, format=source.format)
    loaded = LoadedSource(pages=[], image_hashes={}, report=report)
    images_dir = Path(images_dir)

    def check_image(item: tuple[RawRow, RowText | RowProblem]) -> tuple[RowText, PreparedImage]:
        row, text = item
        if isinstance(text, RowProblem):
            raise text
        page = page_number(row.fields.get("page"))
        recorded_page = page_number(row.fields.get("source_page"), "source_page")  # a page folder dharma_train wrote
        data, path = image_bytes(row.fields.get("image"), row.fields.get("image_base64"), row.base)
        prepared = prepare_image(data, path, images_dir, max_pixels, page, pdf_dpi)
        for bound in bounds:
            bound.check((text.answer.to_json(), text.answer.to_plain_text()), prepared.path)
        return text, prepared if prepared.page is not None else replace(prepared, page=recorded_page)

    with closing(in_order_on_threads(_with_text(source.rows), check_image)) as checked:
        for (row, _), result in tqdm(checked, desc=f"checking {Path(str(location)).name}", unit="row",
                                     mininterval=2, leave=False):
            _record(row, result, loaded, strict, taken)
    return loaded


def _record(row: RawRow, result, loaded: LoadedSource, strict: bool, taken: dict[str, str] | None) -> None:
    """One checked row into the pages or the report, in source order: image duplicates are decided here."""
    report = loaded.report
    row_id = row.fields.get("id")  # as given, so even a row that fails its id check is named
    report.note_columns(row.fields)
    try:
        if isinstance(result, RowProblem):
            raise result
        text, image = result
        if image.sha256 in loaded.holders:
            raise RowProblem("duplicate_image", f"same image bytes as {loaded.holders[image.sha256]}")
        if taken and image.sha256 in taken:
            raise RowProblem("image_in_other_split", f"the same image is already in the {taken[image.sha256]} split")
    except RowProblem as problem:
        if strict:
            raise DataError(f"{row.where} (id {row_id!r}): {problem.reason}: {problem.detail} "
                            f"(without strict, such rows are skipped and reported)") from None
        report.skip(problem.reason, problem.detail, row.where, None if row_id is None else str(row_id))
        return
    loaded.holders[image.sha256] = f"{row.where} (id {text.id!r})"
    loaded.image_hashes[text.id] = image.sha256
    loaded.pages.append(Page(id=text.id, image=image.path, answer=text.answer, family=text.family, task=text.task,
                             source_page=image.page, answer_source=text.answer_source))
    report.use(text, merge_fixes([*row.fixes, *text.fixes, *image.fixes]), row.where)


def _with_text(rows: Iterable[RawRow]) -> Iterator[tuple[RawRow, RowText | RowProblem]]:
    """Each row with its text checked, in order and before any image work: an id seen before is a duplicate."""
    first_row_of_id: dict[str, str] = {}
    for row in rows:
        try:
            if row.problem:
                raise row.problem
            text = read_row_text(row.fields)
            if text.id in first_row_of_id:
                raise RowProblem("duplicate_id", f"id {text.id!r} is already used by {first_row_of_id[text.id]}")
            first_row_of_id[text.id] = row.where
            yield row, text
        except RowProblem as problem:
            yield row, problem


def in_order_on_threads(items: Iterable[I], check: Callable[[I], T]) -> Iterator[tuple[I, T | RowProblem]]:
    """`check(item)` for every item on CHECK_THREADS threads, yielded in order; a RowProblem is yielded, not raised.

    Threads run in parallel here because Pillow and hashlib release the GIL while they decode, resize and hash.
    At most two items per thread are in flight, so memory stays flat on sources with large images.
    """
    def attempt(item: I):
        try:
            return check(item)
        except RowProblem as problem:
            return problem

    pool = ThreadPoolExecutor(max_workers=CHECK_THREADS, thread_name_prefix="dharma-check")
    try:
        pending: deque = deque()
        for item in items:
            pending.append((item, pool.submit(attempt, item)))
            if len(pending) >= 2 * CHECK_THREADS:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:  # also when the caller stops early (strict mode): no thread outlives the loop or writes after it
        pool.shutdown(wait=True, cancel_futures=True)


def load_page_set(location: str | Path, folder: str | Path, *, format: str = "auto", strict: bool = False,
                  max_pixels: int = DEFAULT_MAX_PIXELS, split: str = "eval", pdf_dpi: int = DEFAULT_PDF_DPI,
                  max_skipped_share: float = DEFAULT_MAX_SKIPPED_SHARE,
                  taken: dict[str, str] | None = None, bounds: tuple[LengthBound, ...] = ()) -> PageSet:
    """One source as a PageSet saved in `folder` (stored images in folder/images, the report beside pages.jsonl);
    a source that lost more than `max_skipped_share` of its rows stops (after writing the report). Rows whose image
    is in `taken` (image hash -> split, splits.image_identities) are skipped as leaks, and rows over `bounds`."""
    folder = Path(folder)
    loaded = load_source(location, folder / "images", format=format, strict=strict, max_pixels=max_pixels,
                         split=split, pdf_dpi=pdf_dpi, taken=taken, bounds=bounds)
    write_json_atomically(folder / REPORT_FILE, LoadReport(sources=[loaded.report], splits={split: len(loaded.pages)})
                          .to_dict())
    log_source(loaded.report)
    if not loaded.pages:
        raise DataError(f"{location}: no usable pages ({loaded.report.summary_line()}); see {folder / REPORT_FILE}")
    check_skipped_share(loaded.report, max_skipped_share, folder / REPORT_FILE)
    warn_unverified(split, loaded.pages)
    page_set = PageSet(folder, loaded.pages)
    page_set.save()
    return page_set


def load_splits(data: DataConfig, folder: str | Path, bounds: tuple[LengthBound, ...] = ()) -> dict[str, PageSet]:
    """The configured sources as PageSets by split name ("train", "eval", "test"); {} when none is configured.
    Rows longer than any of `bounds` (data/lengths.py) are skipped as `overlong`.

    Sources load in split order and each skips images an earlier split holds; `data.split` then carves eval/test
    out of train by image hash. Every split's pages.jsonl and the LoadReport are written under `folder`, and the
    report is written even when a split ends empty (then DataError).
    """
    folder = Path(folder)
    locations = {split: getattr(data, split) for split in SPLITS if getattr(data, split)}
    if not locations:
        return {}
    root = folder / LOADED_DIR
    report, taken, loaded = LoadReport(), {}, {}
    for split, location in locations.items():
        result = load_source(location, root / "images", format=data.format, strict=data.strict,
                             max_pixels=data.max_pixels, split=split, taken=taken, pdf_dpi=data.pdf_dpi,
                             bounds=bounds)
        report.sources.append(result.report)
        taken.update({digest: split for digest in result.image_hashes.values()})
        loaded[split] = result
        log_source(result.report)
    pages = {split: result.pages for split, result in loaded.items()}
    fractions = {name: getattr(data.split, name) for name in ("eval", "test") if getattr(data.split, name) > 0}
    if fractions and pages["train"]:
        pages.update(split_pages(pages["train"], loaded["train"].image_hashes, fractions, data.split.seed))
        report.split_from = {"source": data.train, **asdict(data.split)}
    report.splits = {split: len(chosen) for split, chosen in pages.items()}
    write_json_atomically(folder / REPORT_FILE, report.to_dict())
    empty = [split for split, chosen in pages.items() if not chosen]
    if empty:
        raise DataError(f"data.{empty[0]}: no usable pages in {locations.get(empty[0], data.train)} "
                        f"({_summary(report, empty[0])}); see {folder / REPORT_FILE}")
    for source in report.sources:
        check_skipped_share(source, data.max_skipped_share, folder / REPORT_FILE)
    for split, chosen in pages.items():
        warn_unverified(split, chosen)
    sets = {split: PageSet(root / split, chosen) for split, chosen in pages.items()}
    for page_set in sets.values():
        page_set.save()
    log.info("loaded pages: %s (report: %s)", ", ".join(f"{k} {len(v)}" for k, v in sets.items()),
             folder / REPORT_FILE)
    return sets


def check_skipped_share(report: SourceReport, share: float, report_file: Path) -> None:
    """A source that lost more than `share` of its rows to bad rows or leaks stops, in one line: metrics on what is
    left (1 page of 38) would stand for nothing, and training on it is not what was asked for."""
    if not report.rows or report.skipped / report.rows <= share:
        return
    reasons = ", ".join(f"{reason} {count}" for reason, count in report.skips.most_common())
    raise DataError(f"{report.source} (the {report.split} pages) lost {report.skipped} of its {report.rows} rows "
                    f"({report.skipped / report.rows:.0%}: {reasons}), more than the {share:.0%} allowed "
                    f"(data.max_skipped_share, --max-skipped-share); fix the data (every skipped row is in "
                    f"{report_file}) or raise the share")


def _summary(report: LoadReport, split: str) -> str:
    source = next((s for s in report.sources if s.split == split), report.sources[0])
    return source.summary_line()


def log_source(report: SourceReport) -> None:
    """One line per loaded source, a warning when it skipped rows (the report lists every one)."""
    level = logging.WARNING if report.skipped else logging.INFO
    log.log(level, "data.%s %s (%s): %s", report.split, report.source, report.format, report.summary_line())


def warn_unverified(split: str, pages: list[Page]) -> None:
    """Pages to evaluate on whose answers no person checked (a PDF's text layer): scores against them are not
    accuracy, and the log says so."""
    sources = Counter(page.answer_source for page in pages if page.answer_source)
    if sources and split in EVALUATED_SPLITS:
        log.warning("data.%s: %d of its %d pages have unverified answers (%s): scores against them measure "
                    "agreement with those answers, not accuracy", split, sum(sources.values()), len(pages),
                    ", ".join(f"{key} {n}" for key, n in sorted(sources.items())))
