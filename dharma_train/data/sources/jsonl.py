"""JSONL manifests (and pages.jsonl): one JSON object a line, read line by line.

Not through `datasets`: pyarrow fails the whole file on one malformed line and turns a JSON string that looks
like an object into an object, so a bad line could not be reported as one row (measured with datasets 5.2).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from dharma_train.data.sources import RawRow
from dharma_train.data.text_hygiene import not_utf8, strip_bom
from dharma_train.data.validation import RowProblem


def jsonl_rows(path: Path) -> Iterator[RawRow]:
    """Every non-blank line; image paths are relative to the file's folder. A BOM before the first line (Windows
    editors write one) is removed and counted as that row's fix."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield RawRow(where, {}, path.parent, RowProblem("unreadable_text", not_utf8(raw, error, "the line")))
                continue
            line, fixes = strip_bom(line, f"{path.name}") if number == 1 else (line, [])
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except (ValueError, RecursionError) as error:
                yield RawRow(where, {}, path.parent, RowProblem("invalid_json", f"the line is not JSON ({error})"))
                continue
            if not isinstance(fields, dict):
                yield RawRow(where, {}, path.parent,
                             RowProblem("invalid_json", f"the line is a JSON {type(fields).__name__}, not an object"))
                continue
            yield RawRow(where, fields, path.parent, fixes=tuple(fixes))
