"""Atomic writes: a temporary file renamed into place, so a killed run leaves the old file or the new, never half."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path


def write_text_atomically(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """Safe from several threads at once: each writes its own temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def write_json_atomically(path: str | Path, data) -> Path:
    return write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomically(path: str | Path, rows: Iterable[dict]) -> Path:
    return write_text_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
