"""Born-digital PDFs to a page folder whose answers are their text layers: silver training data, not references.

Every page of every PDF under a folder is a row of the report: written (the page rendered like any loaded PDF page,
the answer from its text layer, marked `answer_source: pdf_text_layer`) or skipped with its reason
(`empty_text_layer`, `image_only`, `invisible_text`; `corrupt_pdf` or `encrypted_pdf` for a whole file). The
result is a page folder: `data.train` reads it through the loader, which counts its answers as unverified.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from dharma_train.data.config import DEFAULT_MAX_PIXELS, DEFAULT_PDF_DPI
from dharma_train.data.images import page_count, prepare_image
from dharma_train.data.pages import Page, PageSet
from dharma_train.data.pdf_text import TEXT_LAYER_SOURCE, Bands, page_answer
from dharma_train.data.validation import DEFAULT_FAMILY, LoadReport, RowProblem, RowText, SourceReport
from dharma_train.errors import DataError
from dharma_train.files import write_json_atomically

REPORT_FILE = "pdf_text_report.json"  # beside pages.jsonl; not load_report.json, which a run writes for its splits


def text_layer_pages(source: str | Path, output: str | Path, *, bands: Bands = Bands(), dpi: int = DEFAULT_PDF_DPI,
                     max_pixels: int = DEFAULT_MAX_PIXELS,
                     family: str = DEFAULT_FAMILY) -> tuple[PageSet, SourceReport]:
    """Every page of the PDFs under `source` (a folder, or one PDF) with a usable text layer, saved as a page folder
    in `output` (pages.jsonl, images/, pdf_text_report.json); page ids are the file's path without suffix and the
    page number, `gazettes/2024-01.3`."""
    source, output = Path(source), Path(output)
    files = _pdf_files(source)
    root = source if source.is_dir() else source.parent
    report = SourceReport(split="silver", source=str(source), format="pdf-text")
    pages: list[Page] = []
    for file in files:
        data = file.read_bytes()
        file_id = file.relative_to(root).with_suffix("").as_posix()
        try:
            count = page_count(data)
        except RowProblem as problem:  # a whole file that cannot be opened is one row
            report.skip(problem.reason, problem.detail, str(file), file_id)
            continue
        for page in range(1, count + 1):
            page_id, where = f"{file_id}.{page}", f"{file} page {page}"
            try:
                answer = page_answer(data, page, bands)
                image = prepare_image(data, None, output / "images", max_pixels, page, dpi)
            except RowProblem as problem:
                report.skip(problem.reason, problem.detail, where, page_id)
                continue
            pages.append(Page(page_id, image.path, answer, family, "structured", page, TEXT_LAYER_SOURCE))
            report.use(RowText(page_id, answer, "structured", family, answer_source=TEXT_LAYER_SOURCE), image.fixes,
                       where)
    settings = {"bands": asdict(bands), "pdf_dpi": dpi, "max_pixels": max_pixels}
    write_json_atomically(output / REPORT_FILE,
                          {**LoadReport(sources=[report], splits={"silver": len(pages)}).to_dict(), **settings})
    if not pages:
        raise DataError(f"{source}: no page with a usable text layer ({report.summary_line()}); see "
                        f"{output / REPORT_FILE}")
    page_set = PageSet(output, pages)
    page_set.save()
    return page_set, report


def _pdf_files(source: Path) -> list[Path]:
    if source.is_file() and source.suffix.lower() == ".pdf":
        return [source]
    if not source.is_dir():
        raise DataError(f"{source} is neither a folder nor a .pdf file")
    files = sorted(path for path in source.rglob("*") if path.is_file() and path.suffix.lower() == ".pdf")
    if not files:
        raise DataError(f"{source}: no .pdf files in the folder")
    return files
