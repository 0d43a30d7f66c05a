"""Paths inside a run folder are written relative to it, so a copied or moved run folder still points into itself.

A path under the run folder is stored as `run:01_sft/model` (the prefix keeps it from reading as a Hub id such as
`org/model`); anything outside (a Hub id, the tiny model's cache, a base model's folder) is kept as it is. Only
the values of PATH_KEYS are paths; a manifest's `inputs` are left alone, as they are compared as written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

RUN_RELATIVE = "run:"
PATH_KEYS = frozenset({"model", "path", "processor_path", "folder", "exported", "card", "data", "train_pages",
                       "pairs"})
NOT_CONVERTED = frozenset({"inputs"})  # a manifest's inputs: compared with freshly computed ones, never converted


def in_run(path: str | None, run_dir: Path) -> str | None:
    """`run:REL` for a path under run_dir (absolute, or relative to where the command ran); others unchanged."""
    if not path or path.startswith(RUN_RELATIVE) or not Path(path).is_absolute() and not Path(path).exists():
        return path
    try:
        return RUN_RELATIVE + Path(path).resolve().relative_to(Path(run_dir).resolve()).as_posix()
    except ValueError:  # outside the run: kept as it is
        return path


def from_run(path: str | None, run_dir: Path) -> str | None:
    """The path where the run folder is now, for a stored `run:REL`; others unchanged."""
    if isinstance(path, str) and path.startswith(RUN_RELATIVE):
        return str(Path(run_dir) / path[len(RUN_RELATIVE):])
    return path


def shown(path: str | None) -> str | None:
    """A stored path as report.md shows it: relative to the report's own folder (the run folder)."""
    return path[len(RUN_RELATIVE):] if isinstance(path, str) and path.startswith(RUN_RELATIVE) else path


def run_relative(record, run_dir: Path):
    """A JSON record as written inside run_dir: its paths under run_dir made relative to it."""
    return _convert(record, lambda path: in_run(path, run_dir))


def run_resolved(record, run_dir: Path):
    """A JSON record read from run_dir: its run-relative paths resolved against where run_dir is now."""
    return _convert(record, lambda path: from_run(path, run_dir))


def _convert(value, convert: Callable[[str], str], key: str | None = None):
    if isinstance(value, dict):
        return {k: v if k in NOT_CONVERTED else _convert(v, convert, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(item, convert, key) for item in value]
    if key in PATH_KEYS and isinstance(value, str):
        return convert(value)
    return value
