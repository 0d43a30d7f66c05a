"""A folder of page images or PDFs, each with its answer beside it: `page.json` (the schema object) or `page.txt`.

A file of several pages (a PDF, a multi-frame TIFF) takes one answer per page, `doc.1.txt` ... `doc.N.txt` (or
`.json`): it gives one row per page, id `doc.1` ... A file of one page takes `doc.txt` as an image does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from dharma_train.data.sources import DOCUMENT_SUFFIXES, RawRow
from dharma_train.data.text_hygiene import not_utf8
from dharma_train.data.validation import RowProblem

SIDECARS = {".json": "answer", ".txt": "text"}  # suffix -> the column it fills; .json wins when both exist
PAGE_ANSWER = re.compile(r"^(?P<stem>.+)\.(?P<page>[1-9][0-9]*)$")  # doc.3 (of doc.3.txt): page 3 of doc.pdf


def sidecar_rows(folder: Path) -> Iterator[RawRow]:
    """One row per image or single-page PDF (id: its path under the folder, without suffix), one per page of a
    file with per-page answers, then one per answer file that belongs to no file."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
    stems = {file.with_suffix("") for file in files}
    answers = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in SIDECARS)
    per_page = _per_page_answers(answers, stems)
    claimed = stems | {answer for pages in per_page.values() for answer in pages.values()}
    for file in files:
        stem = file.with_suffix("")
        file_id = stem.relative_to(folder).as_posix()
        if stem in per_page:
            yield from _page_rows(file, file_id, per_page[stem], folder)
        else:
            yield _with_sidecar({"id": file_id, "image": str(file)}, stem, str(file), folder)
    for orphan in (p for p in answers if p.with_suffix("") not in claimed):
        # an answer without its file: reported (missing_field), never dropped silently
        fields = {"id": orphan.relative_to(folder).with_suffix("").as_posix()}
        yield _with_sidecar(fields, orphan.with_suffix(""), str(orphan), folder)


def _per_page_answers(answers: list[Path], stems: set[Path]) -> dict[Path, dict[int, Path]]:
    """file stem -> {page: answer stem} for answers named NAME.PAGE beside a file NAME (an answer whose own stem is
    a file, `scan.1.txt` beside `scan.1.png`, belongs to that file)."""
    pages: dict[Path, dict[int, Path]] = {}
    for answer in answers:
        answer_stem = answer.with_suffix("")
        match = PAGE_ANSWER.match(answer_stem.name)
        if answer_stem in stems or not match:
            continue
        file_stem = answer_stem.with_name(match["stem"])
        if file_stem in stems:
            pages.setdefault(file_stem, {})[int(match["page"])] = answer_stem
    return pages


def _page_rows(file: Path, file_id: str, answers: dict[int, Path], folder: Path) -> Iterator[RawRow]:
    """Every page of `file` with its answer; a page with none, and an answer for a page the file lacks, are rows
    too (skipped with their reason). A file that cannot be read gives one row, which names the damage."""
    from dharma_train.data.images import page_count

    try:
        pages = page_count(file.read_bytes())
    except RowProblem as problem:
        yield RawRow(str(file), {"id": file_id, "image": str(file)}, folder, problem)
        return
    for page in range(1, max(pages, max(answers)) + 1):
        fields = {"id": f"{file_id}.{page}", "image": str(file), "page": page}
        where = f"{file} page {page}"
        if page not in answers:
            yield RawRow(where, fields, folder, RowProblem(
                "missing_field", f"no answer for page {page} of {file.name}: write "
                                 f"{file.stem}.{page}.txt or {file.stem}.{page}.json beside it"))
            continue
        yield _with_sidecar(fields, answers[page], where, folder)
    whole = [file.with_suffix(suffix) for suffix in SIDECARS if file.with_suffix(suffix).is_file()]
    for answer in whole:
        yield RawRow(str(answer), {"id": file_id}, folder, RowProblem(
            "multi_page", f"{answer.name} answers the whole of {file.name}, which has per-page answers "
                          f"({file.stem}.1{answer.suffix} ...): keep one or the other"))


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
