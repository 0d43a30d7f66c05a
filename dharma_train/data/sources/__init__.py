"""Where pages come from: each reader turns one on-disk layout into rows with the benchmark's column names.

    pages     a page folder: pages.jsonl beside its images (what dharma_train writes)
    jsonl     a JSONL manifest: one row a line, `image` a path relative to the file or `image_base64`
    parquet   a parquet file, or a folder of them (the DharmaOCR-Benchmark as downloaded)
    dataset   a `datasets` dataset: a save_to_disk folder, or a Hugging Face Hub id; `:SPLIT` picks a split
    sidecar   a folder of images or PDFs, each with a `.json` answer or a `.txt` transcription of the same name
              (a file of several pages: one per page, NAME.1.txt ...)
    auto      any of the above, told apart by what is on disk
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dharma_train.data.config import FORMATS
from dharma_train.data.pages import PAGES_FILE
from dharma_train.data.validation import RowProblem
from dharma_train.errors import DataError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif")
DOCUMENT_SUFFIXES = (*IMAGE_SUFFIXES, ".pdf")  # what a sidecar folder's pages can be
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class RawRow:
    """One row as read: `where` names it for messages (file and row), `base` is where relative image paths start."""

    where: str
    fields: dict
    base: Path | None = None
    problem: RowProblem | None = None  # the row could not even be read (a line that is not JSON)
    fixes: tuple[tuple[str, str], ...] = ()  # made while reading it (a BOM before a file's first line), counted


@dataclass
class Source:
    location: str
    format: str
    rows: Iterator[RawRow]


def open_source(location: str | Path, format: str = "auto") -> Source:
    """Resolve the format and check the source exists; rows are read lazily, one at a time."""
    from dharma_train.data.sources import jsonl, sidecar, tables

    if format not in FORMATS:
        raise DataError(f"unknown data format {format!r}; expected one of {list(FORMATS)}")
    location = str(location)
    path, split = _split_suffix(location)
    resolved = detect_format(path, location) if format == "auto" else format
    _check_layout(path, resolved, location)
    if split and resolved != "dataset":
        raise DataError(f"data source {location}: ':{split}' names a dataset split, and this is a {resolved} source")
    if resolved == "pages":
        rows = jsonl.jsonl_rows(path / PAGES_FILE)
    elif resolved == "jsonl":
        rows = jsonl.jsonl_rows(path)
    elif resolved == "parquet":
        rows = tables.parquet_rows(path)
    elif resolved == "dataset":
        rows = tables.dataset_rows(path if path.exists() else str(path), split)
    else:
        rows = sidecar.sidecar_rows(path)
    return Source(location, resolved, rows)


def detect_format(path: Path, location: str) -> str:
    """What a location holds, judged from the files there (a Hub id when nothing local has that name)."""
    if path.is_file():
        if path.suffix == ".parquet":
            return "parquet"
        if path.suffix in JSONL_SUFFIXES:
            return "jsonl"
        if path.suffix.lower() in DOCUMENT_SUFFIXES:
            raise DataError(f"data source {location}: a {path.suffix} file is a page, not a data source; give the "
                            f"folder holding it with its answers beside it (NAME.txt, or NAME.1.txt ... for each page "
                            f"of a PDF), or name it in the image column of a JSONL manifest")
        raise DataError(f"data source {location}: cannot tell the format of a {path.suffix or 'suffix-less'} file; "
                        f"expected .parquet or .jsonl (or set data.format)")
    if path.is_dir():
        if (path / PAGES_FILE).is_file():
            return "pages"
        if any((path / name).is_file() for name in SAVED_DATASET_FILES):
            return "dataset"
        if next(path.rglob("*.parquet"), None) is not None:
            return "parquet"
        if any(p.suffix.lower() in DOCUMENT_SUFFIXES for p in path.rglob("*")):
            return "sidecar"
        raise DataError(f"data source {location}: the folder holds no {PAGES_FILE}, saved dataset, parquet files, "
                        f"images or PDFs")
    if HUB_ID.match(str(path)):
        return "dataset"
    raise DataError(f"data source {location} does not exist (no such file or folder, and not a Hugging Face "
                    f"dataset id)")


def _split_suffix(location: str) -> tuple[Path, str | None]:
    """`name:split` names a split of a dataset; a path that exists as written is never cut."""
    if Path(location).exists() or ":" not in location:
        return Path(location), None
    name, split = location.rsplit(":", 1)
    return Path(name), split or None


def _check_layout(path: Path, format: str, location: str) -> None:
    if format == "dataset" and not path.exists() and HUB_ID.match(str(path)):
        return  # a Hub id: checked when it is loaded
    if not path.exists():
        raise DataError(f"data source {location} does not exist")
    wanted = {"pages": path.is_dir() and (path / PAGES_FILE).is_file(), "jsonl": path.is_file(),
              "parquet": path.is_file() or path.is_dir(), "dataset": path.is_dir(), "sidecar": path.is_dir()}
    if not wanted[format]:
        needs = {"pages": f"a folder holding {PAGES_FILE}", "jsonl": "a file", "parquet": "a file or folder",
                 "dataset": "a save_to_disk folder or a Hub id", "sidecar": "a folder of images or PDFs"}[format]
        raise DataError(f"data source {location}: format {format} needs {needs}")
