"""Stage manifests: what a finished point was made from, so a re-run can tell finished work from stale work.

A point's *inputs* are everything its model depends on: the stage's resolved config, the run settings that change
what training computes (seed, resolved device and precision, pixel budget), its input model (the base model's
files, or the key of the stage before), a content hash of its training pages and any input files, and
dharma_train's version. Their hash is the point's `key`. Settings that change speed or memory but not results
(logging, workers, activation checkpointing, attention kernels, checkpoint schedule, memory budget) are left out,
so turning them on to get past an out-of-memory error keeps finished stages.

`manifest.json` is written atomically, after the stage's model is saved and again once it is evaluated; a folder
without one never counts as finished, whatever else it holds. `attempt.json`, written when a stage starts, lets
an interrupted stage resume from its checkpoints only if its inputs are still the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import PageSet
from dharma_train.files import read_json_or_none, write_json_atomically
from dharma_train.models.loading import HUB_ID
from dharma_train.reporting.run_record import package_versions

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ATTEMPT = "attempt.json"
CONTENT_HASH_LIMIT = 64 * 1024**2  # larger files (model weights) are known by name, size and modification time
NOT_INPUTS = {"logging_steps", "dataloader_workers", "gradient_checkpointing", "checkpoint_every",
              "keep_checkpoints", "resume", "memory_budget_gb"}
LABELS = {"dharma_train": "dharma_train's version", "stage": "the stage's class", "config": "its config",
          "trainer": "trainer settings", "model_settings": "model settings", "input": "its input model",
          "data": "its training pages", "files": "its input files", "base": "the base model"}


def key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(folder: str | Path) -> dict | None:
    """The folder's manifest, or None when it has none (never finished) or an unreadable one; model paths stored
    relative to the run folder come back as paths where the run folder is now (a moved run keeps its stages)."""
    manifest = read_json_or_none(Path(folder) / MANIFEST)
    if not (isinstance(manifest, dict) and {"key", "inputs", "artifact"} <= set(manifest)):
        return None
    return _artifact_paths(manifest, lambda path: _from_run(path, Path(folder).parent))


def write_manifest(folder: str | Path, manifest: dict) -> dict:
    """Written atomically, model paths inside the run folder stored relative to it ("01_sft/model")."""
    stored = _artifact_paths(json.loads(json.dumps(manifest, default=str)),
                             lambda path: _in_run(path, Path(folder).parent))
    write_json_atomically(Path(folder) / MANIFEST, stored)
    return manifest


RUN_RELATIVE = "run:"  # marks a path stored relative to the run folder, so it never reads as a hub id


def _in_run(path: str | None, run_dir: Path) -> str | None:
    if not path or not Path(path).is_absolute() and not Path(path).exists():
        return path
    try:
        return RUN_RELATIVE + str(Path(path).resolve().relative_to(run_dir.resolve()))
    except ValueError:  # outside the run (a hub id, the tiny model's cache, a base folder): kept as it is
        return path


def _from_run(path: str | None, run_dir: Path) -> str | None:
    if isinstance(path, str) and path.startswith(RUN_RELATIVE):
        return str(run_dir / path[len(RUN_RELATIVE):])
    return path


def _artifact_paths(manifest: dict, convert) -> dict:
    """The manifest with every model path (its artifact's and its stored evaluation entry's) converted."""
    def artifact(data: dict | None) -> dict | None:
        if not data:
            return data
        return {**data, "path": convert(data["path"]), "processor_path": convert(data.get("processor_path")),
                "base": artifact(data.get("base"))}

    manifest = {**manifest, "artifact": artifact(manifest.get("artifact"))} if "artifact" in manifest else manifest
    entry = (manifest.get("evaluation") or {}).get("entry")
    if entry:
        entry = {**entry, "model": convert(entry.get("model")), "artifact": artifact(entry.get("artifact"))}
        manifest["evaluation"] = {**manifest["evaluation"], "entry": entry}
    return manifest


def new_manifest(point: str, kind: str, inputs: dict, artifact: ModelArtifact, train: dict) -> dict:
    return {"point": point, "kind": kind, "key": key(inputs), "inputs": inputs, "artifact": artifact.to_dict(),
            "train": train, "evaluation": None, "versions": package_versions(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def is_fresh(manifest: dict | None, inputs: dict) -> tuple[bool, str]:
    """(True, why) when the manifest records exactly these inputs and its model is still on disk; else why not."""
    if manifest is None:
        return False, "it has not finished in this output_dir before"
    if manifest["inputs"] != inputs:
        return False, describe_changes(manifest["inputs"], inputs)
    artifact = ModelArtifact.from_dict(manifest["artifact"])
    missing = [a.path for a in _chain(artifact) if not Path(a.path).exists() and not HUB_ID.fullmatch(a.path)]
    if missing:
        return False, f"its saved model {missing[0]} is missing"
    return True, "it finished earlier with the same inputs"


def describe_changes(before: dict, now: dict, limit: int = 3) -> str:
    """'its config changed (optimization.learning_rate: 0.003 -> 0.001)': what differs, in words."""
    old, new = _flatten(before), _flatten(now)
    changed = [name for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
    groups: dict[str, list[str]] = {}
    for name in changed:
        group, _, rest = name.partition(".")
        groups.setdefault(group, []).append(rest)
    parts = []
    for group, names in groups.items():
        label = LABELS.get(group, group)
        if group in ("config", "trainer", "model_settings", "dharma_train"):
            details = [f"{n or group}: {old.get(_join(group, n), '(none)')} -> {new.get(_join(group, n), '(none)')}"
                       for n in names[:limit]]
            more = f", and {len(names) - limit} more" if len(names) > limit else ""
            parts.append(f"{label} changed ({'; '.join(details)}{more})")
        else:
            parts.append(f"{label} changed")
    return "; ".join(parts) or "its inputs changed"


def begin_attempt(folder: str | Path, inputs: dict, resume: bool) -> bool:
    """Ready a stage folder to train: True when it keeps an interrupted attempt with the same inputs to resume.

    The stale manifest goes first, so no crash from here on can leave an old manifest beside new, partial outputs.
    Anything from an attempt with other inputs (checkpoints, mined pairs, a stale model) is cleared.
    """
    folder = Path(folder)
    (folder / MANIFEST).unlink(missing_ok=True)
    record = {"key": key(inputs), "inputs": inputs}
    if resume and read_json_or_none(folder / ATTEMPT) == record:
        return True
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_json_atomically(folder / ATTEMPT, record)
    return False


# ---- inputs ----------------------------------------------------------------------------------------------------

def stage_inputs(stage, context, upstream: str, pages: str) -> dict:
    """Everything a stage's model depends on; `upstream` is the key of the point it starts from, `pages` the
    fingerprint of its training pages."""
    config, files = stage.config, stage.input_files()
    return _json({
        "dharma_train": package_versions()["dharma_train"],
        "stage": f"{type(stage).__module__}.{type(stage).__qualname__}",
        "config": _without_data_path(_plain(config)),
        "trainer": trainer_inputs(context.trainer),
        "model_settings": {"min_pixels": context.model.min_pixels, "max_pixels": context.model.max_pixels},
        "input": upstream,
        "data": pages,
        "files": {f"{index}:{Path(path).name}": path_fingerprint(Path(path)) for index, path in enumerate(files)},
    })


def _without_data_path(config):
    """A stage's `data` folder is known by its pages' content (`data` below), not by where it lies: a moved or
    copied run folder keeps its stages."""
    if isinstance(config, dict) and config.get("data") is not None:
        return {**config, "data": "(its pages, by content)"}
    return config


def base_inputs(base: ModelArtifact) -> dict:
    return _json({"base": artifact_fingerprint(base)})


def evaluation_key(evaluation, pages: str, context, point_key: str) -> str:
    """What an evaluated point's metrics depend on: the model, the evaluation settings and pages, where it ran."""
    return key({"dharma_train": package_versions()["dharma_train"], "evaluation": _plain(evaluation),
                "pages": pages, "point": point_key, "device": context.trainer.resolved_device(),
                "dtype": context.trainer.model_dtype(),
                "pixels": [context.model.min_pixels, context.model.max_pixels]})


def trainer_inputs(trainer) -> dict:
    values = {name: value for name, value in dataclasses.asdict(trainer).items() if name not in NOT_INPUTS}
    values.update(device=trainer.resolved_device(), precision=trainer.resolved_precision())
    return values


# ---- fingerprints ----------------------------------------------------------------------------------------------

def pages_fingerprint(pages: PageSet) -> str:
    """A hash of every page's row and image bytes: regenerating identical synthetic pages keeps it the same."""
    digest = hashlib.sha256()
    for page in tqdm(pages.pages, desc="fingerprinting pages", disable=len(pages) < 2000):
        row = page.to_row(pages.root)
        row.pop("image")
        digest.update(json.dumps(row, sort_keys=True).encode())
        digest.update(_file_digest(page.image).encode())
    return digest.hexdigest()[:16]


def artifact_fingerprint(artifact: ModelArtifact) -> dict:
    """A local model by its files; a hub model by its id and the cached snapshot's commit."""
    found = {"path": artifact.path}
    if Path(artifact.path).is_dir():
        found = {"files": path_fingerprint(Path(artifact.path))}
    else:
        found["revision"] = _hub_revision(artifact.path)
    if artifact.base is not None:
        found["base"] = artifact_fingerprint(artifact.base)
    return found


def path_fingerprint(path: Path) -> str:
    """A file or folder: names and content hashes (or size and mtime, for files over CONTENT_HASH_LIMIT)."""
    if not path.exists():
        return "missing"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}\0{_file_digest(file)}\n".encode())
    return digest.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    stat = path.stat()
    if stat.st_size > CONTENT_HASH_LIMIT:
        return f"size={stat.st_size},mtime={stat.st_mtime_ns}"
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _hub_revision(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid repo id: the path is simply recorded
        return None
    return Path(cached).parent.name if isinstance(cached, str) else None


def _json(values: dict) -> dict:
    """As it reads back from manifest.json (tuples become lists...), so a fresh dict compares equal to a stored one."""
    return json.loads(json.dumps(values, default=str))


def _plain(value):
    if value is None:
        return None
    if dataclasses.is_dataclass(value):
        return _json(dataclasses.asdict(value))
    return repr(value)


def _flatten(values, prefix: str = "") -> dict:
    if not isinstance(values, dict):
        return {prefix: values}
    flat = {}
    for name, value in values.items():
        flat.update(_flatten(value, _join(prefix, name)))
    return flat


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _chain(artifact: ModelArtifact):
    while artifact is not None:
        yield artifact
        artifact = artifact.base

