"""Preference pairs for DPO: read from a file, or built from pages with loop-shaped rejected answers.

Self-mined pairs (the model's own degenerate outputs) replace the synthetic ones once mining exists; both
produce the same PreferencePair rows and the same `pairs.jsonl` format.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from dharma_train.data.pages import PageSet
from dharma_train.data.prompts import target_text
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
