"""Stage manifests: what a finished point was made from, so a re-run can tell finished work from stale work.

A point's *inputs* are everything its model depends on: the stage's resolved config, the run settings that change
what training computes (seed, resolved device and precision, pixel budget), its input model (the base model's
files, or the key of the stage before), a content hash of its training pages and any input files (a DPO stage's
given pairs, as the run loaded them: every pair and its image's bytes), and dharma_train's version. Their hash is
the point's `key`. Settings that change speed or memory but not results (logging, workers, activation
checkpointing, attention kernels, checkpoint schedule, memory budget) are left out, so turning them on to get past
an out-of-memory error keeps finished stages.

`manifest.json` is written atomically, after the stage's model is saved and again once it is evaluated; a folder
without one never counts as finished, whatever else it holds. `attempt.json`, written when a stage starts, lets
an interrupted stage resume from its checkpoints only if its inputs are still the same.

A stage's manifest also records what it wrote (`outputs`: each file of its model folder with its size and xxh3
content hash, checked before the stage is reused, so damaged weights re-run the stage) and what it was made on
(`made_on`: device, CPU threads, CPU or GPUs, package versions; two entries when it resumed on another machine).
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
from dharma_train.files import file_hash, read_json_or_none, write_json_atomically
from dharma_train.models.loading import HUB_ID
from dharma_train.reporting.run_record import machine_differences, package_versions, stage_machine
from dharma_train.run_folder import ATTEMPT, MANIFEST
from dharma_train.run_paths import run_relative, run_resolved

log = logging.getLogger(__name__)

CONTENT_HASH_LIMIT = 64 * 1024**2  # larger files (model weights) are known by name, size and modification time
LABELS = {"dharma_train": "dharma_train's version", "stage": "the stage's class", "config": "its config",
          "trainer": "trainer settings", "model_settings": "model settings", "input": "its input model",
          "data": "its training pages", "files": "its input files", "base": "the base model"}


def key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(folder: str | Path) -> dict | None:
    """The folder's manifest, or None when it has none (never finished) or a damaged one (damaged_manifest says
    why); model paths stored relative to the run folder come back as paths where the run folder is now (a moved run
    keeps its stages)."""
    manifest = read_json_or_none(Path(folder) / MANIFEST)
    if manifest_problem(manifest) is not None:
        return None
    return run_resolved(manifest, Path(folder).parent)


def damaged_manifest(folder: str | Path) -> str | None:
    """Why a manifest.json that is there cannot be used ('01_sft/manifest.json is damaged (not valid JSON)'); None
    when it is usable or absent. A damaged one is derived data: the point is made again, and with it its manifest."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    problem = manifest_problem(read_json_or_none(path))
    return None if problem is None else f"{Path(path.parent.name) / MANIFEST} is damaged ({problem})"


def manifest_problem(manifest) -> str | None:
    """What makes a read manifest unusable, in words ('its artifact has no path'), or None: every value the run
    reads from it has its type, so a manifest of the wrong shape is never a KeyError on every re-run."""
    if manifest is None:
        return "not valid JSON, or unreadable"
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    kinds = {"key": str, "inputs": dict, "artifact": dict, "point": str, "kind": str, "train": dict}
    for name, kind in kinds.items():
        if not isinstance(manifest.get(name), kind):
            return f"its '{name}' is missing or not a {'string' if kind is str else 'JSON object'}"
    artifact = manifest["artifact"]
    while artifact is not None:
        if not isinstance(artifact, dict) or not isinstance(artifact.get("path"), str):
            return "its artifact has no path"
        artifact = artifact.get("base")
    evaluation = manifest.get("evaluation")
    if evaluation is not None and not (isinstance(evaluation, dict) and isinstance(evaluation.get("entry"), dict)):
        return "its evaluation has no entry"
    outputs = manifest.get("outputs")
    if outputs and not (isinstance(outputs, dict) and isinstance(outputs.get("folder"), str)
                        and isinstance(outputs.get("files"), dict)):
        return "its outputs have no folder or files"
    if not isinstance(manifest.get("made_on", []), list):
        return "its made_on is not a list"
    return None


def write_manifest(folder: str | Path, manifest: dict) -> dict:
    """Written atomically, every path inside the run folder stored relative to it ("run:01_sft/model")."""
    stored = run_relative(json.loads(json.dumps(manifest, default=str)), Path(folder).parent)
    write_json_atomically(Path(folder) / MANIFEST, stored)
    return manifest


def new_manifest(point: str, kind: str, inputs: dict, artifact: ModelArtifact, train: dict) -> dict:
    return {"point": point, "kind": kind, "key": key(inputs), "inputs": inputs, "artifact": artifact.to_dict(),
            "train": train, "evaluation": None, "versions": package_versions(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def stage_manifest(folder: str | Path, point: str, kind: str, inputs: dict, artifact: ModelArtifact,
                   train: dict) -> dict:
    """A trained stage's manifest: new_manifest, plus the files it wrote and the machines its attempt ran on."""
    manifest = new_manifest(point, kind, inputs, artifact, train)
    attempt = read_json_or_none(Path(folder) / ATTEMPT) or {}
    manifest["made_on"] = attempt.get("made_on") or [stage_machine(inputs["trainer"]["device"])]
    manifest["outputs"] = written_files(artifact)
    return manifest


def written_files(artifact: ModelArtifact) -> dict:
    """Every file of the artifact's own folder, by its path there: size and content hash."""
    folder = Path(artifact.path)
    if not folder.is_dir():
        return {}
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    return {"folder": str(folder),
            "files": {str(f.relative_to(folder)): {"bytes": f.stat().st_size, "xxh3_128": file_hash(f)}
                      for f in files}}


def changed_output(outputs: dict | None) -> str | None:
    """Why a finished stage's written files no longer are what it wrote ('02_structured/model/model.safetensors
    changed since it was written (3136808 bytes, now 1000)'), or None when they all are. Sizes are compared
    before any file is hashed. A manifest from before outputs were recorded has none to check."""
    if not outputs:
        return None
    folder, recorded = Path(outputs["folder"]), outputs["files"]
    shown = Path(*folder.parts[-2:])  # NN_stage/model: the run folder's own layout
    present = {str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file()} if folder.is_dir() else set()
    for name, written in recorded.items():
        if name not in present:
            return f"{shown / name} is missing since it was written"
        size = (folder / name).stat().st_size
        if size != written["bytes"]:
            return f"{shown / name} changed since it was written ({written['bytes']} bytes, now {size})"
    extra = sorted(present - set(recorded))
    if extra:
        return f"{shown / extra[0]} appeared in {shown} since it was written"
    for name, written in recorded.items():
        if file_hash(folder / name) != written["xxh3_128"]:
            return f"{shown / name} changed since it was written (same size, other content)"
    return None


def machine_note(point: str, manifest: dict, device: str) -> str | None:
    """A line for the log and the report when a stage's numbers come from another machine than this run's, or from
    two machines (resumed elsewhere); None when it was made, whole, on one like this."""
    made_on = manifest.get("made_on") or []
    if len(made_on) > 1:
        return (f"stage {point} was resumed on another machine ({'; '.join(machine_differences(*made_on[-2:]))}): "
                "its weights mix both")
    if made_on:
        differences = machine_differences(made_on[0], stage_machine(device))
        if differences:
            return (f"stage {point} was made on another machine than this run's ({'; '.join(differences)}); reused "
                    "as it is, not re-run (trainer.resume=never re-runs it here)")
    return None


def is_fresh(manifest: dict | None, inputs: dict, damage: str | None = None) -> tuple[bool, str]:
    """(True, why) when the manifest records exactly these inputs and its model is still on disk; else why not.
    `damage`: why the manifest that is there cannot be used (damaged_manifest), when read_manifest gave None."""
    if manifest is None and damage:
        return False, f"{damage}: the stage is made again, and its manifest with it"
    if manifest is None:
        return False, "it has not finished in this output_dir before"
    if manifest["inputs"] != inputs:
        return False, describe_changes(manifest["inputs"], inputs)
    artifact = ModelArtifact.from_dict(manifest["artifact"])
    missing = [a.path for a in _chain(artifact) if not Path(a.path).exists() and not HUB_ID.fullmatch(a.path)]
    if missing:
        return False, f"its saved model {missing[0]} is missing"
    changed = changed_output(manifest.get("outputs"))
    if changed:
        return False, changed
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
    Anything from an attempt with other inputs (checkpoints, mined pairs, a stale model) is cleared, and so is a
    finished attempt's (a manifest is there: it runs again because its outputs or a stage before it changed). The
    attempt records the machine it runs on; resumed on a different one, both are kept and the log says what differs.
    """
    folder = Path(folder)
    finished = (folder / MANIFEST).exists()
    (folder / MANIFEST).unlink(missing_ok=True)
    record = {"key": key(inputs), "inputs": inputs}
    machine = stage_machine(inputs["trainer"]["device"])
    earlier = read_json_or_none(folder / ATTEMPT)
    if resume and not finished and isinstance(earlier, dict) and {k: earlier.get(k) for k in record} == record:
        made_on = earlier.get("made_on") or []
        if not isinstance(made_on, list):
            made_on = []
        if made_on and machine_differences(made_on[-1], machine):
            log.warning("%s resumes on another machine than the one its checkpoints were made on (%s): its weights "
                        "will mix both", folder.name, "; ".join(machine_differences(made_on[-1], machine)))
            write_json_atomically(folder / ATTEMPT, {**record, "made_on": [*made_on, machine]})
        return True
    checkpoints = sorted(folder.glob("trainer/checkpoint-*"))
    if checkpoints:
        log.warning("%s: dropping %d checkpoint(s) in %s: %s", folder.name, len(checkpoints), folder / "trainer",
                    _why_not_resumed(folder, earlier, record, resume, finished))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_json_atomically(folder / ATTEMPT, {**record, "made_on": [machine]})
    return False


def _why_not_resumed(folder: Path, earlier, record: dict, resume: bool, finished: bool) -> str:
    """Why an attempt's checkpoints cannot be resumed, in words, for the one line that says they are dropped."""
    if not resume:
        return "trainer.resume=never"
    if finished:
        return "the stage had finished (its manifest was there) and runs again"
    if not (folder / ATTEMPT).exists():
        return f"no {ATTEMPT} says what inputs they were made with"
    if not isinstance(earlier, dict) or not {"key", "inputs"} <= set(earlier):
        return (f"{Path(folder.name) / ATTEMPT}, which says what inputs they were made with, is damaged, so they "
                f"cannot be matched to today's; the stage runs from scratch")
    return "they were made with other inputs; the stage runs from scratch"


# ---- inputs ----------------------------------------------------------------------------------------------------

def stage_inputs(stage, context, upstream: str, pages: str) -> dict:
    """Everything a stage's model depends on; `upstream` is the key of the point it starts from, `pages` the
    fingerprint of its training pages."""
    config, files = stage.config, stage.input_files()
    return _json({
        "dharma_train": package_versions()["dharma_train"],
        "stage": f"{type(stage).__module__}.{type(stage).__qualname__}",
        "config": _without_paths(_plain(config), set(files)),
        "trainer": trainer_inputs(context.trainer),
        "model_settings": {"min_pixels": context.model.min_pixels, "max_pixels": context.model.max_pixels},
        "input": upstream,
        "data": pages,
        "files": {setting: input_fingerprint(Path(path)) for setting, path in files.items()},
    })


def _without_paths(config, settings: set[str]):
    """A stage's `data` is known by its pages' content (`data` below) and a setting naming its input files (a DPO
    stage's given pairs) by those files' content (`files` below), not by where they lie: a moved or copied run
    folder or source keeps its stages."""
    if not isinstance(config, dict):
        return config
    config = {name: "(by content, see files)" if name in settings else value for name, value in config.items()}
    if config.get("data") is not None:
        config["data"] = "(its pages, by content)"
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
    """The `trainer` settings that change what a stage computes, decided field by field: the seed, what happens on
    a NaN, the resolved device and precision, the token budget (it changes the batches), lora_4bit (it quantizes
    the frozen base) and master weights in the optimizer where they apply (bf16 parameters; named only then, so
    keys from before the setting stay valid). Everything else there changes speed, memory or bookkeeping, not the
    result: recomputation, compile, kernels, packing, the fused optimizer, loaders, the hardware strategy and its
    sharding options, the memory budget, checkpoints, resume, logging and the lock."""
    performance = {"token_budget": trainer.performance.token_budget, "lora_4bit": trainer.performance.lora_4bit}
    if trainer.masters_in_optimizer():
        performance["master_weights"] = "optimizer"
    return {"seed": trainer.seed, "on_nonfinite": trainer.on_nonfinite, "device": trainer.resolved_device(),
            "precision": trainer.resolved_precision(), "performance": performance}


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


def pairs_fingerprint(folder: Path) -> str:
    """A pair set a run loaded (data/stages/NAME/pairs), by every pair's row and its image's bytes, wherever the image
    lies: an edit to a given pair or its image, or another data.max_pixels, changes it; a moved run folder does not."""
    from dharma_train.data.pairs import load_pairs

    digest = hashlib.sha256()
    for pair in load_pairs(folder):
        row = dataclasses.asdict(pair)
        row.pop("image")
        digest.update(json.dumps(row, sort_keys=True).encode())
        digest.update(_file_digest(pair.image).encode())
    return digest.hexdigest()[:16]


def input_fingerprint(path: Path) -> str:
    """A stage's input file: a loaded pair set by its pairs (pairs_fingerprint), anything else by its files."""
    from dharma_train.data.pairs import is_pair_set

    return pairs_fingerprint(path) if is_pair_set(path) else path_fingerprint(path)


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

