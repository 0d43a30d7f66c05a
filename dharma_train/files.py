"""Atomic writes: a temporary file renamed into place, so a killed run leaves the old file or the new, never half.

Files are flushed to disk (fsync) before the rename, so even a power cut cannot leave a renamed but empty file.
Folders (a saved model) are written whole into a temporary sibling, synced, then swapped in by rename.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, sync: bool = True):
    """Yield a temporary path beside `path`; on success it is synced and renamed onto `path`, on failure removed.

    sync=False skips the fsync (many small files, e.g. generated page images, where a rename suffices).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if sync:
            _sync_file(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


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


def read_json_or_none(path: str | Path):
    """A JSON file's content, or None when it is missing or unreadable (a file cut short by a crash reads as None)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_folder_atomically(target: str | Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` fills a temporary sibling folder, which then replaces `target` by rename.

    A folder cannot be renamed over a non-empty one, so the old folder is first moved aside to `<name>.old` and
    deleted after the swap: whenever the run dies, `target` is absent, the old folder or the new one, never a mix.
    """
    target = Path(target)
    tmp, old = target.with_name(target.name + ".tmp"), target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    for file in tmp.rglob("*"):
        if file.is_file():
            _sync_file(file)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _sync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
