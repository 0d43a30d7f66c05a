"""A folder of page images, each with its answer beside it: `page.json` (the schema object) or `page.txt` (plain)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dharma_train.data.sources import IMAGE_SUFFIXES, RawRow
from dharma_train.data.text_hygiene import not_utf8
from dharma_train.data.validation import RowProblem

SIDECARS = {".json": "answer", ".txt": "text"}  # suffix -> the column it fills; .json wins when both exist


def sidecar_rows(folder: Path) -> Iterator[RawRow]:
    """One row per image (id: its path under the folder, without suffix), then one per sidecar with no image."""
    images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    stems = {image.with_suffix("") for image in images}
    for image in images:
        fields = {"id": image.relative_to(folder).with_suffix("").as_posix(), "image": str(image)}
        yield _with_sidecar(fields, image.with_suffix(""), str(image), folder)
    orphans = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in SIDECARS
                     and p.with_suffix("") not in stems)
    for orphan in orphans:  # an answer without its image: reported (missing_field), never dropped silently
        fields = {"id": orphan.relative_to(folder).with_suffix("").as_posix()}
        yield _with_sidecar(fields, orphan.with_suffix(""), str(orphan), folder)


def _with_sidecar(fields: dict, stem: Path, where: str, folder: Path) -> RawRow:
    for suffix, column in SIDECARS.items():
        sidecar = stem.with_name(stem.name + suffix)
        if sidecar.is_file():
            data = sidecar.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                return RawRow(where, fields, folder, RowProblem("unreadable_text", not_utf8(data, error, str(sidecar))))
            fields[column] = _without_final_line_end(text) if suffix == ".txt" else text
            break
    return RawRow(where, fields, folder)


def _without_final_line_end(text: str) -> str:
    """A text file's last line end closes the file (POSIX), it is not part of the transcription."""
    for end in ("\r\n", "\n", "\r"):
        if text.endswith(end):
            return text[:-len(end)]
    return text
