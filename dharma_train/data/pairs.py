"""Preference pairs for DPO: read from pairs.jsonl or any data source, or built from pages with loop answers.

Self-mined pairs (the model's own degenerate outputs) replace the synthetic ones once mining exists; both
produce the same PreferencePair rows and the same `pairs.jsonl` format. Given pairs (a pairs.jsonl or any other
source) go through the same row policy as pages: bad rows are skipped and reported with a reason (or, with
`data.strict`, stop the run at the first one), and a run keeps what it loaded in data/stages/NAME/pairs/ (a pair
set: pairs.jsonl, fixed images, load_report.json), the one copy its DPO stage trains on.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from dharma_train.data.config import DEFAULT_MAX_PIXELS, DEFAULT_PDF_DPI
from dharma_train.data.images import image_bytes, page_number, prepare_image
from dharma_train.data.pages import PageSet
from dharma_train.data.prompts import target_text
from dharma_train.data.sources import open_source
from dharma_train.data.text_hygiene import merge_fixes
from dharma_train.data.validation import PAIR_COLUMNS, LoadReport, RowProblem, SourceReport, read_pair_text
from dharma_train.errors import DataError
from dharma_train.files import not_a_file, write_json_atomically, write_jsonl_atomically

PAIRS_FILE = "pairs.jsonl"


@dataclass(frozen=True)
class PreferencePair:
    id: str
    image: Path
    chosen: str
    rejected: str
    reason: str = "given"  # why the rejected answer is bad, kept for inspection
    source: str = "given"  # how the rejected answer was made: given, synthetic, greedy, sample-N


def loop_pairs(pages: PageSet, task: str, seed: int = 0, repeats: int = 12) -> list[PreferencePair]:
    """Chosen: the ground truth. Rejected: the same answer running into a loop, the failure DPO is meant to cure."""
    rng = random.Random(seed)
    pairs = []
    for page in pages:
        chosen = target_text(page.answer, task)
        words = chosen.split(" ")
        cut = rng.randint(max(1, len(words) // 3), max(1, len(words) - 1))
        unit = " ".join(words[max(0, cut - rng.randint(1, 3)):cut])
        # a one-word unit ("à") needs more repeats than `repeats` to span a loop the detector recognises (64 chars)
        rejected = " ".join(words[:cut]) + (" " + unit) * max(repeats, -(-64 // (len(unit) + 1)))
        pairs.append(PreferencePair(id=page.id, image=page.image, chosen=chosen, rejected=rejected, reason="loop",
                                    source="synthetic"))
    return pairs


def save_pairs(pairs: list[PreferencePair], folder: str | Path, within: str | Path | None = None) -> Path:
    """Write pairs.jsonl atomically so the exact pairs a stage trained on stay inspectable; images inside `folder`,
    or inside `within` (the run folder, for pairs a stage mined from the run's pages), are written relative to
    `folder` (`../data/loaded/images/...`), so the folder, or the run, can be moved."""
    folder = Path(folder)
    tree = Path(within) if within is not None else folder
    return write_jsonl_atomically(folder / PAIRS_FILE, ({**asdict(pair), "image": _stored_image(pair.image, folder,
                                                                                                tree)}
                                                        for pair in pairs))


def _stored_image(image: Path, folder: Path, tree: Path) -> str:
    """Relative to `folder` when the image lies in `tree` (which moves with it); otherwise its path as it is."""
    if not Path(image).resolve().is_relative_to(tree.resolve()):  # a given page's own file keeps its path
        return str(image)
    return os.path.relpath(Path(image).resolve(), folder.resolve())


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Read a pairs.jsonl dharma_train wrote (or a folder holding one) as it is: its rows were checked before they
    were saved, so a bad row is damage and raises DataError naming file and line (given pairs: load_given_pairs)."""
    path = Path(path)
    if path.is_dir():
        path = path / PAIRS_FILE
    if not path.is_file():
        raise DataError(f"preference pairs file {path} does not exist")
    pairs = []
    try:
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    pairs.append(_parse_pair(line, f"{path}:{line_number}", path.parent))
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}): damaged") from None
    if not pairs:
        raise DataError(f"{path} holds no preference pairs")
    return pairs


def _parse_pair(line: str, where: str, root: Path) -> PreferencePair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: a pair must be a JSON object")
    missing = [key for key in ("id", "image", "chosen", "rejected") if key not in row]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}")
    if not all(isinstance(row[key], str) and row[key] for key in ("chosen", "rejected")):
        raise DataError(f"{where}: 'chosen' and 'rejected' must be non-empty strings")
    if row["chosen"] == row["rejected"]:
        raise DataError(f"{where}: 'chosen' and 'rejected' are identical")
    if not isinstance(row["image"], str):
        raise DataError(f"{where}: 'image' must be a path")
    image = Path(row["image"])
    image = image if image.is_absolute() else root / image
    if not image.is_file():
        raise DataError(f"{where}: image {not_a_file(image)}")
    return PreferencePair(id=str(row["id"]), image=image, chosen=row["chosen"], rejected=row["rejected"],
                          reason=str(row.get("reason", "given")), source=str(row.get("source", "given")))


@dataclass(frozen=True)
class PairSet:
    """Given preference pairs a run loaded once (load_pair_set): checked and prepared, read as they are."""

    root: Path

    def pairs(self) -> list[PreferencePair]:
        return load_pairs(self.root)

    def report(self) -> dict:
        """What the load made of the source's rows; its `source` is the location the user gave."""
        return pair_set_report(self.root)


def is_pairs_file(location: str | Path) -> bool:
    """A pairs.jsonl (or a folder holding one), as save_pairs writes it."""
    path = Path(location)
    return path.name == PAIRS_FILE or (path.is_dir() and (path / PAIRS_FILE).is_file())


def is_pair_set(location: str | Path) -> bool:
    """A folder load_pair_set wrote: its rows were checked and its images prepared when it was loaded, so it is read
    as it is (load_pairs), never checked or prepared again."""
    from dharma_train.data.loading import REPORT_FILE

    path = Path(location)
    return path.is_dir() and (path / PAIRS_FILE).is_file() and (path / REPORT_FILE).is_file()


def pair_set_report(folder: str | Path) -> dict:
    """What the load of a pair set made of its source's rows (a SourceReport as a dict; its `source` is the given
    location)."""
    from dharma_train.data.loading import REPORT_FILE

    return json.loads((Path(folder) / REPORT_FILE).read_text(encoding="utf-8"))["sources"][0]


def check_pair_source(location: str | Path) -> None:
    """Before any model loads: the source must exist and hold rows, not pages (its rows are checked when loaded)."""
    _open_pair_source(location, "auto")


def _open_pair_source(location: str | Path, format: str):
    """A pairs.jsonl (or its folder) opened as JSONL, any other pair source as its format says; pages are refused."""
    if is_pairs_file(location):
        path = Path(location)
        path = path / PAIRS_FILE if path.is_dir() else path
        if not path.is_file():
            raise DataError(f"preference pairs file {path} does not exist")
        return open_source(path, "jsonl")
    source = open_source(location, format)
    if source.format in ("pages", "sidecar"):
        raise DataError(f"preference pairs {location}: a {source.format} folder holds pages, not pairs; give a "
                        f"pairs.jsonl, a JSONL, parquet or dataset with image, chosen and rejected columns")
    return source


def load_given_pairs(location: str | Path, images_dir: str | Path, *, strict: bool = False,
                     max_pixels: int = DEFAULT_MAX_PIXELS,
                     pdf_dpi: int = DEFAULT_PDF_DPI) -> tuple[list[PreferencePair], dict]:
    """Given pairs (a pairs.jsonl or any other pair source) through the row policy, with the load report kept for
    pairs_summary.json; a source with no usable row fails, naming what became of its rows."""
    pairs, report = load_pair_source(location, images_dir, strict=strict, max_pixels=max_pixels, pdf_dpi=pdf_dpi)
    if not pairs:
        raise DataError(f"preference pairs {location}: no usable rows ({report.summary_line()})")
    return pairs, {"load_report": report.to_dict()}


def load_pair_set(location: str | Path, folder: str | Path, *, strict: bool = False,
                  max_pixels: int = DEFAULT_MAX_PIXELS, split: str = "pairs",
                  pdf_dpi: int = DEFAULT_PDF_DPI, taken: dict[str, str] | None = None,
                  bounds: tuple = ()) -> PairSet:
    """A run's given pairs loaded once into `folder` (pairs.jsonl, images, load_report.json), the report where
    report.md reads every load report; the DPO stage reads the PairSet as it is. Pairs whose image is in `taken`
    (an evaluation page's, splits.image_identities) are skipped as leaks, and pairs over `bounds` (data/lengths.py)
    as `overlong`."""
    from dharma_train.data.loading import REPORT_FILE, log_source

    folder = Path(folder)
    pairs, report = load_pair_source(location, folder / "images", strict=strict, max_pixels=max_pixels, split=split,
                                     pdf_dpi=pdf_dpi, taken=taken, bounds=bounds)
    write_json_atomically(folder / REPORT_FILE, LoadReport(sources=[report], splits={split: len(pairs)}).to_dict())
    log_source(report)
    if not pairs:
        raise DataError(f"{split}: no usable preference pairs in {location} ({report.summary_line()})"
                        f"{_first_skip(report)}; see {folder / REPORT_FILE}")
    save_pairs(pairs, folder)
    return PairSet(folder)


def _first_skip(report) -> str:
    """'; first skipped: pairs.jsonl:1 (id 'p0'): identical_pair: ...', so a one-row mistake needs no report."""
    if not report.skipped_rows:
        return ""
    first = report.skipped_rows[0]
    detail = next((example["detail"] for example in report.examples.get(first["reason"], [])
                   if example["row"] == first["row"]), "")
    return f"; first skipped: {first['row']} (id {first['id']!r}): {first['reason']}: {detail}"


def load_pair_source(location: str | Path, images_dir: str | Path, *, format: str = "auto", strict: bool = False,
                     max_pixels: int = DEFAULT_MAX_PIXELS, split: str = "pairs", pdf_dpi: int = DEFAULT_PDF_DPI,
                     taken: dict[str, str] | None = None,
                     bounds: tuple = ()) -> tuple[list[PreferencePair], SourceReport]:
    """Pairs from a pairs.jsonl, a parquet file, a `datasets` dataset or a JSONL with columns (id?, image, chosen,
    rejected, prompt?), checked row by row like pages: bad rows are skipped and listed (or, strict, fail at once).

    A `prompt` column is not used: a stage pairs every image with its task's own instruction (data/prompts.py).
    """
    source = _open_pair_source(location, format)
    report = SourceReport(split=split, source=str(location), format=source.format, known_columns=PAIR_COLUMNS)
    pairs, ids = [], set()
    for index, row in enumerate(source.rows):
        row_id = str(row.fields.get("id", index))
        try:
            if row.problem:
                raise row.problem
            report.note_columns(row.fields)
            chosen, rejected, text_fixes = read_pair_text(row.fields)
            if row_id in ids:
                raise RowProblem("duplicate_id", f"id {row_id!r} is used by an earlier pair")
            image = row.fields.get("image")
            if image is None and isinstance(row.fields.get("images"), list) and len(row.fields["images"]) == 1:
                image = row.fields["images"][0]  # TRL's vision DPO layout: a list of one image
            data, path = image_bytes(image, row.fields.get("image_base64"), row.base)
            prepared = prepare_image(data, path, Path(images_dir), max_pixels, page_number(row.fields.get("page")),
                                     pdf_dpi)
            if taken and prepared.sha256 in taken:
                raise RowProblem("image_in_other_split",
                                 f"the same image is already in the {taken[prepared.sha256]} split")
            for bound in bounds:  # the longer of the two answers decides
                bound.check((chosen, rejected), prepared.path)
        except RowProblem as problem:
            if strict:
                raise DataError(f"{row.where} (id {row_id!r}): {problem.reason}: {problem.detail} "
                                f"(without data.strict, such rows are skipped and reported)") from None
            report.skip(problem.reason, problem.detail, row.where, row_id)
            continue
        ids.add(row_id)
        pairs.append(PreferencePair(id=row_id, image=prepared.path, chosen=chosen, rejected=rejected,
                                    reason=str(row.fields.get("reason") or "given"),
                                    source=str(row.fields.get("source") or "given")))
        report.use(None, merge_fixes([*row.fixes, *text_fixes, *prepared.fixes]), row.where, row_id)
    return pairs, report
