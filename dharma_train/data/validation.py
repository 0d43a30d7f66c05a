"""Row checks and the load report: every row read is either used (perhaps fixed) or skipped with a named reason.

A row's columns follow the DharmaOCR-Benchmark (`id`, `image` or `image_base64`, `assistant` holding the answer
JSON as a string, `assistant_without_json`), and page-folder rows (`answer` as an object, `family`, `task`) use the
same names. A missing schema field means an empty one (the benchmark stores only the fields a page has). Answer
keys outside the schema skip the row rather than being dropped: dropping them would drop text that is on the page
from the target, and the model would learn to leave it out.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from dharma_train.data.prompts import TASKS
from dharma_train.data.schema import FIELDS, PageAnswer
from dharma_train.data.text_hygiene import clean_text, merge_fixes, strip_bom

SKIP_REASONS = {
    "missing_field": "a required column (id, image, answer) is absent or null",
    "missing_file": "the image path does not exist",
    "unreadable_text": "a line or sidecar file is not UTF-8 text (the detail names its likely encoding)",
    "corrupt_image": "the image cannot be decoded",
    "truncated_image": "the image data ends early",
    "decompression_bomb": "the image has more pixels than Pillow will decode",
    "unusable_size": "the image is empty or a strip with an aspect ratio over 200:1",
    "invalid_json": "the answer is not a JSON object",
    "empty_answer": "the answer is empty ('', {} or only empty fields)",
    "extra_fields": "the answer has keys outside header/margin/footer/text",
    "non_string_value": "a value that must be a string (answer field, id, image path) is not",
    "invalid_value": "task, family or page is not one of the accepted values (a page the file does not have)",
    "multi_page": "a file of several pages (PDF, multi-frame TIFF) has one answer for all: give one answer per page",
    "corrupt_pdf": "the PDF cannot be opened or its page rendered",
    "encrypted_pdf": "the PDF needs a password: decrypt it first",
    "empty_text_layer": "a PDF page with no text and no image (dharma-data pdf-text)",
    "image_only": "a PDF page with images and no text layer, a scan (dharma-data pdf-text)",
    "invisible_text": "a PDF page whose text layer holds text not drawn on it (dharma-data pdf-text)",
    "identical_pair": "a preference pair's chosen and rejected answers are the same",
    "overlong": "the image's tokens, the instruction and the answer exceed the maximum sequence length "
                "(model.max_length, or the model's own limit)",
    "duplicate_id": "an earlier row of the same source has this id (the first one keeps it, used or not)",
    "duplicate_image": "an earlier row of the same source has the same image bytes",
    "image_in_other_split": "the same image bytes are already in an earlier split (no page leaks across splits)",
}
FIX_REASONS = {
    "rotated_exif": "a camera's EXIF orientation applied, so the page is stored upright",
    "converted_mode": "image mode other than RGB or grayscale converted (alpha over white, 16-bit scaled to 8)",
    "resized": "image over the pixel budget (data.max_pixels) scaled down, aspect ratio kept",
    "removed_bom": "a byte-order mark (U+FEFF) at the start of a text file or answer removed",
    "normalized_newlines": "Windows (CRLF) or old Mac (CR) line ends in the answer turned into \\n",
    "normalized_unicode": "answer text put in Unicode NFC (an accent composed with its letter, as models write it)",
}
UNVERIFIED_SOURCES = {  # `answer_source` values: answers no person checked, counted as unverified where loaded
    "pdf_text_layer": "the text layer of a born-digital PDF (dharma-data pdf-text): silver data, not a reference to "
                      "evaluate against",
}
ANSWER_COLUMNS = ("assistant", "answer")  # the schema JSON: a string, or an object in JSONL rows
PLAIN_COLUMNS = ("assistant_without_json", "text")  # a plain transcription, used when no JSON answer is given
FAMILY_COLUMNS = ("family", "category")
KNOWN_COLUMNS = frozenset({"id", "image", "image_base64", "page", "source_page", "answer_source", "task",
                           *ANSWER_COLUMNS, *PLAIN_COLUMNS, *FAMILY_COLUMNS})
PAIR_COLUMNS = frozenset({"id", "image", "images", "image_base64", "page", "chosen", "rejected", "reason", "source"})
DEFAULT_FAMILY = "printed"
EXAMPLES_PER_REASON = 5


class RowProblem(Exception):
    """A row that cannot be used: `reason` is a key of SKIP_REASONS, `detail` what was found."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RowText:
    """What a row says about its page, before its image is looked at."""

    id: str
    answer: PageAnswer
    task: str
    family: str
    fixes: tuple[tuple[str, str], ...] = ()  # text hygiene the answer needed (text_hygiene.clean_text)
    answer_source: str | None = None  # None: given by the user; else a key of UNVERIFIED_SOURCES


def read_row_text(fields: dict) -> RowText:
    """The id, answer, task and family of a row; raises RowProblem naming the first thing wrong."""
    page_id = _row_id(fields.get("id"))
    answer, task, fixes = _answer(fields)
    given_task = fields.get("task")
    if given_task is not None:
        if given_task not in TASKS:
            raise RowProblem("invalid_value", f"task must be one of {list(TASKS)}, got {given_task!r}")
        task = given_task
    family = next((fields[key] for key in FAMILY_COLUMNS if fields.get(key) is not None), DEFAULT_FAMILY)
    if not isinstance(family, str) or not family.strip():
        raise RowProblem("invalid_value", f"family must be a non-empty string, got {family!r}")
    answer_source = fields.get("answer_source")
    if answer_source is not None and answer_source not in UNVERIFIED_SOURCES:
        raise RowProblem("invalid_value", f"answer_source must be one of {list(UNVERIFIED_SOURCES)} (or absent: "
                                          f"an answer you give), got {answer_source!r}")
    return RowText(page_id, answer, task, family.strip(), tuple(merge_fixes(fixes)), answer_source)


def check_page_number(page: int, pages: int) -> None:
    """A row's `page` must be one of its file's pages."""
    if not 1 <= page <= pages:
        raise RowProblem("invalid_value", f"page {page} does not exist: the file has {pages} page(s)")


def read_pair_text(fields: dict) -> tuple[str, str, list[tuple[str, str]]]:
    """A preference pair's chosen and rejected answers (two different non-empty strings), and the text fixes."""
    texts, fixes = [], []
    for key in ("chosen", "rejected"):
        value = fields.get(key)
        if value is None:
            raise RowProblem("missing_field", f"no '{key}'")
        if not isinstance(value, str):
            raise RowProblem("non_string_value", f"'{key}' must be a string, got {type(value).__name__}")
        if not value.strip():
            raise RowProblem("empty_answer", f"'{key}' is empty")
        value, needed = clean_text(value, f"'{key}'")
        texts.append(value)
        fixes += needed
    if texts[0] == texts[1]:
        raise RowProblem("identical_pair", "'chosen' and 'rejected' are identical")
    return texts[0], texts[1], merge_fixes(fixes)


def _row_id(value) -> str:
    if value is None or value == "":
        raise RowProblem("missing_field", "no 'id'")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowProblem("non_string_value", f"'id' must be a string or an integer, got {type(value).__name__}")
    return str(value)


def _answer(fields: dict) -> tuple[PageAnswer, str, list[tuple[str, str]]]:
    """The schema answer from `assistant`/`answer`; failing those columns, the plain text (task plain); with the
    text fixes it needed (a BOM before the JSON, CRLF line ends, decomposed accents)."""
    column = next((key for key in ANSWER_COLUMNS if fields.get(key) is not None), None)
    if column is None:
        plain_column = next((key for key in PLAIN_COLUMNS if fields.get(key) is not None), None)
        if plain_column is None:
            raise RowProblem("missing_field", f"no answer: none of {list(ANSWER_COLUMNS + PLAIN_COLUMNS)}")
        plain = fields[plain_column]
        if not isinstance(plain, str):
            raise RowProblem("non_string_value", f"'{plain_column}' must be a string, got {type(plain).__name__}")
        plain, fixes = clean_text(plain, f"'{plain_column}'")
        if not plain.strip():
            raise RowProblem("empty_answer", f"'{plain_column}' is empty")
        return PageAnswer(text=plain), "plain", fixes
    value, fixes = fields[column], []
    if isinstance(value, str):
        value, fixes = strip_bom(value, f"'{column}'")  # json.loads refuses a leading BOM
        if not value.strip():
            raise RowProblem("empty_answer", f"'{column}' is an empty string")
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as error:
            raise RowProblem("invalid_json", f"'{column}' is not valid JSON ({error})") from None
    elif not isinstance(value, dict):
        raise RowProblem("non_string_value", f"'{column}' must be a JSON string, got {type(value).__name__}")
    if not isinstance(value, dict):
        raise RowProblem("invalid_json", f"'{column}' holds a JSON {type(value).__name__}, not an object")
    extra = sorted(set(value) - set(FIELDS))
    if extra:
        raise RowProblem("extra_fields", f"'{column}' has key(s) {extra} outside the schema {list(FIELDS)}")
    not_strings = sorted(key for key, item in value.items() if not isinstance(item, str))
    if not_strings:
        kinds = ", ".join(f"{key}: {type(value[key]).__name__}" for key in not_strings)
        raise RowProblem("non_string_value", f"'{column}' field(s) must be strings ({kinds})")
    cleaned = {}
    for key, item in value.items():
        cleaned[key], needed = clean_text(item, f"'{column}' field {key}")
        fixes += needed
    answer = PageAnswer(**cleaned)
    if not any(getattr(answer, name).strip() for name in FIELDS):
        raise RowProblem("empty_answer", f"'{column}' has no text in any field")
    return answer, "structured", fixes


@dataclass
class SourceReport:
    """What became of every row of one source: rows = used + skipped; fixed rows are among the used."""

    split: str
    source: str
    format: str
    rows: int = 0
    used: int = 0
    fixed: int = 0
    skipped: int = 0
    fixes: Counter = field(default_factory=Counter)
    skips: Counter = field(default_factory=Counter)
    tasks: Counter = field(default_factory=Counter)
    families: Counter = field(default_factory=Counter)
    unverified: Counter = field(default_factory=Counter)  # used rows whose answer no person checked, by answer_source
    ignored_columns: Counter = field(default_factory=Counter)  # columns outside KNOWN_COLUMNS, with row counts
    examples: dict[str, list[dict]] = field(default_factory=dict)  # reason -> the first rows it hit, with details
    skipped_rows: list[dict] = field(default_factory=list)  # every skipped row: where, id, reason
    known_columns: frozenset = KNOWN_COLUMNS

    def note_columns(self, fields: dict) -> None:
        self.ignored_columns.update(key for key in fields if key not in self.known_columns)

    def use(self, text: RowText | None, fixes: list[tuple[str, str]], where: str, row_id: str | None = None) -> None:
        """A row that became a page (its text counted by task and family) or a preference pair (text None)."""
        self.rows += 1
        self.used += 1
        if text is not None:
            self.tasks[text.task] += 1
            self.families[text.family] += 1
            if text.answer_source:
                self.unverified[text.answer_source] += 1
            row_id = text.id
        if fixes:
            self.fixed += 1
        for reason, detail in fixes:
            self.fixes[reason] += 1
            self._example(reason, where, row_id, detail)

    def skip(self, reason: str, detail: str, where: str, row_id: str | None) -> None:
        self.rows += 1
        self.skipped += 1
        self.skips[reason] += 1
        self.skipped_rows.append({"row": where, "id": row_id, "reason": reason})
        self._example(reason, where, row_id, detail)

    def _example(self, reason: str, where: str, row_id: str | None, detail: str) -> None:
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append({"row": where, "id": row_id, "detail": detail})

    def summary_line(self) -> str:
        parts = [f"{self.rows} rows: {self.used} used ({self.fixed} fixed), {self.skipped} skipped"]
        if self.skips:
            parts.append("skipped: " + ", ".join(f"{key} {n}" for key, n in sorted(self.skips.items())))
        if self.fixes:
            parts.append("fixed: " + ", ".join(f"{key} {n}" for key, n in sorted(self.fixes.items())))
        if self.unverified:
            parts.append("unverified answers: " + ", ".join(f"{key} {n}" for key, n in sorted(self.unverified.items())))
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"split": self.split, "source": self.source, "format": self.format, "rows": self.rows,
                "used": self.used, "fixed": self.fixed, "skipped": self.skipped,
                "fixes": dict(sorted(self.fixes.items())), "skips": dict(sorted(self.skips.items())),
                "tasks": dict(self.tasks), "families": dict(self.families), "unverified": dict(self.unverified),
                "ignored_columns": dict(self.ignored_columns), "examples": self.examples,
                "skipped_rows": self.skipped_rows}


@dataclass
class LoadReport:
    """Every source a run loaded, and the pages each split ended with; saved as `data/load_report.json`."""

    sources: list[SourceReport] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    split_from: dict | None = None  # the data.split settings when eval/test were carved out of train

    def to_dict(self) -> dict:
        return {"sources": [source.to_dict() for source in self.sources], "splits": self.splits,
                "split_from": self.split_from,
                "reasons": {"skip": {key: SKIP_REASONS[key] for key in self._seen("skips")},
                            "fix": {key: FIX_REASONS[key] for key in self._seen("fixes")},
                            "unverified": {key: UNVERIFIED_SOURCES[key] for key in self._seen("unverified")}}}

    def _seen(self, kind: str) -> list[str]:
        return sorted({key for source in self.sources for key in getattr(source, kind)})
