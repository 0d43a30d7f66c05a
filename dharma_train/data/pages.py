"""A page set on disk: `pages.jsonl` beside the page images, loaded with every row and image checked up front."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from dharma_train.data.prompts import TASKS
from dharma_train.data.schema import PageAnswer
from dharma_train.errors import DataError
from dharma_train.files import not_a_file, write_jsonl_atomically

PAGES_FILE = "pages.jsonl"


@dataclass(frozen=True)
class Page:
    """One training or evaluation page: an image file and what is written on it."""

    id: str
    image: Path
    answer: PageAnswer
    family: str = "printed"
    task: str = "structured"  # "structured": JSON schema answer; "plain": transcription; "general": Markdown
    source_page: int | None = None  # the page of the multi-page file (PDF, TIFF) the image was taken from
    answer_source: str | None = None  # None: given; "pdf_text_layer": unverified (validation.UNVERIFIED_SOURCES)

    def to_row(self, root: Path) -> dict:
        row = {
            "id": self.id,
            "image": str(self.image.relative_to(root)) if self.image.is_relative_to(root) else str(self.image),
            "family": self.family,
            "task": self.task,
            "answer": {"header": self.answer.header, "margin": self.answer.margin,
                       "footer": self.answer.footer, "text": self.answer.text},
        }
        if self.source_page is not None:
            row["source_page"] = self.source_page
        if self.answer_source is not None:
            row["answer_source"] = self.answer_source
        return row


@dataclass
class PageSet:
    """An ordered list of pages read from (or written to) one folder."""

    root: Path
    pages: list[Page] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pages)

    def __iter__(self):
        return iter(self.pages)

    def save(self) -> Path:
        """Write `pages.jsonl` atomically (temporary file, then rename) so a killed run never leaves half a file."""
        return write_jsonl_atomically(self.root / PAGES_FILE, (page.to_row(self.root) for page in self.pages))


def load_pages(root: str | Path, check_images: bool = True) -> PageSet:
    """Read a page folder; any bad row or unreadable image raises DataError naming the file and line."""
    root = Path(root)
    if root.is_file() and root.name == PAGES_FILE:
        root = root.parent
    elif root.is_file():
        raise DataError(f"{root} is a file, not a page folder: load_pages reads a folder holding {PAGES_FILE} beside "
                        f"its images; to load a JSONL, parquet or image-folder source (with the row checks), use "
                        f"dharma_train.data.loading.load_page_set(source, folder) or `dharma-data`")
    index = root / PAGES_FILE
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if not index.is_file():
        raise DataError(f"{root} has no {PAGES_FILE}: a page folder holds {PAGES_FILE} beside its images")
    pages: list[Page] = []
    seen: dict[str, int] = {}
    with index.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{index}:{line_number}"
            page = _parse_row(line, where, root)
            if page.id in seen:
                raise DataError(f"{where}: id {page.id!r} already used on line {seen[page.id]}")
            seen[page.id] = line_number
            if check_images:
                _check_image(page.image, where)
            pages.append(page)
    if not pages:
        raise DataError(f"{index} holds no pages")
    return PageSet(root=root, pages=pages)


def _parse_row(line: str, where: str, root: Path) -> Page:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: a row must be a JSON object")
    missing = [key for key in ("id", "image", "answer") if key not in row]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}")
    if not isinstance(row["answer"], dict):
        raise DataError(f"{where}: 'answer' must be an object with header/margin/footer/text strings")
    try:
        answer = PageAnswer.from_dict(row["answer"])
    except ValueError as error:
        raise DataError(f"{where}: {error}") from None
    task = row.get("task", "structured")
    if task not in TASKS:
        raise DataError(f"{where}: task must be one of {list(TASKS)}, got {task!r}")
    image = Path(row["image"])
    source_page = row.get("source_page")
    if source_page is not None and (isinstance(source_page, bool) or not isinstance(source_page, int)):
        raise DataError(f"{where}: 'source_page' must be a page number, got {source_page!r}")
    answer_source = row.get("answer_source")
    if answer_source is not None and not isinstance(answer_source, str):
        raise DataError(f"{where}: 'answer_source' must be a string, got {answer_source!r}")
    return Page(id=str(row["id"]), image=image if image.is_absolute() else root / image,
                answer=answer, family=str(row.get("family", "printed")), task=task, source_page=source_page,
                answer_source=answer_source)


def _check_image(path: Path, where: str) -> None:
    if not path.is_file():
        raise DataError(f"{where}: image {not_a_file(path)}")
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for corrupt files
        raise DataError(f"{where}: image {path} cannot be read ({type(error).__name__}: {error})") from None
