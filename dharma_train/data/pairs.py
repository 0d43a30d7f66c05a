"""Preference pairs for DPO: read from pairs.jsonl or any data source, or built from pages with loop answers.

Self-mined pairs (the model's own degenerate outputs) replace the synthetic ones once mining exists; both
produce the same PreferencePair rows and the same `pairs.jsonl` format.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from dharma_train.data.config import DEFAULT_MAX_PIXELS
from dharma_train.data.images import image_bytes, prepare_image
from dharma_train.data.pages import PageSet
from dharma_train.data.prompts import target_text
from dharma_train.data.sources import open_source
from dharma_train.data.validation import PAIR_COLUMNS, RowProblem, SourceReport, read_pair_text
from dharma_train.errors import DataError
from dharma_train.files import write_jsonl_atomically

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


def save_pairs(pairs: list[PreferencePair], folder: str | Path) -> Path:
    """Write pairs.jsonl atomically so the exact pairs a stage trained on stay inspectable."""
    return write_jsonl_atomically(Path(folder) / PAIRS_FILE,
                                  ({**asdict(pair), "image": str(pair.image)} for pair in pairs))


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Read a pairs.jsonl (or a folder holding one); every bad row raises DataError naming file and line."""
    path = Path(path)
    if path.is_dir():
        path = path / PAIRS_FILE
    if not path.is_file():
        raise DataError(f"preference pairs file {path} does not exist")
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                pairs.append(_parse_pair(line, f"{path}:{line_number}", path.parent))
    if not pairs:
        raise DataError(f"{path} holds no preference pairs")
    return pairs


def _parse_pair(line: str, where: str, root: Path) -> PreferencePair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg})") from None
    missing = [key for key in ("id", "image", "chosen", "rejected") if key not in row]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}")
    if not all(isinstance(row[key], str) and row[key] for key in ("chosen", "rejected")):
        raise DataError(f"{where}: 'chosen' and 'rejected' must be non-empty strings")
    if row["chosen"] == row["rejected"]:
        raise DataError(f"{where}: 'chosen' and 'rejected' are identical")
    image = Path(row["image"])
    image = image if image.is_absolute() else root / image
    if not image.is_file():
        raise DataError(f"{where}: image {image} does not exist")
    return PreferencePair(id=str(row["id"]), image=image, chosen=row["chosen"], rejected=row["rejected"],
                          reason=str(row.get("reason", "given")), source=str(row.get("source", "given")))


def is_pairs_file(location: str | Path) -> bool:
    """A pairs.jsonl (or a folder holding one), as save_pairs writes it: read by load_pairs, every row must be good."""
    path = Path(location)
    return path.name == PAIRS_FILE or (path.is_dir() and (path / PAIRS_FILE).is_file())


def check_pair_source(location: str | Path) -> None:
    """Before any model loads: a pairs.jsonl is read in full; another source must exist and hold rows, not pages."""
    if is_pairs_file(location):
        load_pairs(location)
        return
    source = open_source(location)
    if source.format in ("pages", "sidecar"):
        raise DataError(f"preference pairs {location}: a {source.format} folder holds pages, not pairs; give a "
                        f"pairs.jsonl, a JSONL, parquet or dataset with image, chosen and rejected columns")


def load_given_pairs(location: str | Path, images_dir: str | Path) -> tuple[list[PreferencePair], dict]:
    """A pairs.jsonl as written by save_pairs, or any other pair source with its load report (for pairs_summary)."""
    if is_pairs_file(location):
        return load_pairs(location), {}
    pairs, report = load_pair_source(location, images_dir)
    if not pairs:
        raise DataError(f"preference pairs {location}: no usable rows ({report.summary_line()})")
    return pairs, {"load_report": report.to_dict()}


def load_pair_source(location: str | Path, images_dir: str | Path, *, format: str = "auto", strict: bool = False,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[list[PreferencePair], SourceReport]:
    """Pairs from a parquet file, a `datasets` dataset or a JSONL with columns (id?, image, chosen, rejected, prompt?),
    checked row by row like pages: bad rows are skipped and counted (or, strict, fail).

    A `prompt` column is not used: a stage pairs every image with its task's own instruction (data/prompts.py).
    """
    source = open_source(location, format)
    report = SourceReport(split="pairs", source=source.location, format=source.format, known_columns=PAIR_COLUMNS)
    pairs, ids = [], set()
    for index, row in enumerate(source.rows):
        row_id = str(row.fields.get("id", index))
        try:
            if row.problem:
                raise row.problem
            report.note_columns(row.fields)
            chosen, rejected = read_pair_text(row.fields)
            if row_id in ids:
                raise RowProblem("duplicate_id", f"id {row_id!r} is used by an earlier pair")
            image = row.fields.get("image")
            if image is None and isinstance(row.fields.get("images"), list) and len(row.fields["images"]) == 1:
                image = row.fields["images"][0]  # TRL's vision DPO layout: a list of one image
            data, path = image_bytes(image, row.fields.get("image_base64"), row.base)
            prepared = prepare_image(data, path, Path(images_dir), max_pixels)
        except RowProblem as problem:
            if strict:
                raise DataError(f"{row.where} (id {row_id!r}): {problem.reason}: {problem.detail}") from None
            report.skip(problem.reason, problem.detail, row.where, row_id)
            continue
        ids.add(row_id)
        pairs.append(PreferencePair(id=row_id, image=prepared.path, chosen=chosen, rejected=rejected,
                                    reason=str(row.fields.get("reason") or "given"), source="given"))
        report.use(None, prepared.fixes, row.where, row_id)
    return pairs, report
