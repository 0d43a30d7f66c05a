"""What `plan` says of a run's stages: each reused or re-run and why (chained as the run chains them), and each
training stage's memory floor. Shared by a single run's plan (plan.py) and an ablation's (plan_ablation.py)."""

from __future__ import annotations

from pathlib import Path

from dharma_train.errors import DharmaError
from dharma_train.run_folder import RunFolder

GB = 1024**3


def model_lines(config, loadable: bool, problems: list[str]) -> list[str]:
    """Each trained stage's memory floor against the budget, when the model's config is here to size it."""
    if not loadable:
        return ["memory floor: not estimated (the model's config.json is not here)"]
    lines: list[str] = []
    checked("memory floor", lambda: memory_lines(config), problems, lines)
    checked("memory check", lambda: _memory_check(config), problems, lines)
    return lines


def checked(title: str, describe, problems: list[str], lines: list[str]) -> bool:
    """Append a section's lines, or the refusal the run would stop with (kept in `problems`); True if it passed."""
    try:
        found = describe()
    except DharmaError as error:
        problems.append(str(error))
        lines.append(f"{title}: REFUSED: {error}")
        return False
    lines.extend([f"{title}: {found}"] if isinstance(found, str) else [f"{title}:", *found])
    return True


def stage_lines(config, pair_sets: dict) -> list[str]:
    """Each stage in order: run or reuse, and why, from the manifests already in output_dir, chained as the run
    chains them: a stage is reused only if it started from a model the run would give it (the base model's files, or
    a point before it, itself reused: the gate may pass over a rejected one) and its files are still those it wrote.
    `pair_sets`: the given pairs an earlier run loaded (run_inputs.loaded_pair_sets), keyed as the run keys them."""
    from dharma_train.artifact import base_artifact
    from dharma_train.manifest import base_inputs, changed_output, damaged_manifest, key, read_manifest
    from dharma_train.stages.dpo import given_pairs

    output_dir = Path(config.output_dir)
    lines, rerun = [], None
    reusable = {key(base_inputs(base_artifact(config.model.path)))}  # keys of the points a stage may start from
    for index, (name, stage) in enumerate(config.stages.items(), start=1):
        folder = RunFolder(output_dir).point(index, name)
        what = f"  [{index}/{len(config.stages)}] {name} ({stage.kind}{_method(stage)})"
        manifest = read_manifest(folder)
        if rerun is not None:
            lines.append(f"{what}: runs, because {rerun} before it runs")
            continue
        if manifest is None:
            damage = damaged_manifest(folder)
            why = (f"because {damage}" if damage else "it has not finished in this output_dir before"
                   if output_dir.exists() else "new output_dir")
            lines.append(f"{what}: runs, {why}")
            rerun = name
            continue
        changed = (settings_changed(manifest, stage, config, pair_sets.get(name))
                   or _input_changed(manifest, reusable, index) or changed_output(manifest.get("outputs")))
        if changed:
            lines.append(f"{what}: runs, because {changed}")
            rerun = name
        else:
            inputs = "pages and given pairs are" if given_pairs(stage) else "pages are"
            lines.append(f"{what}: reused (finished with the same settings and input model, its files as it wrote "
                         f"them; its {inputs} checked again when the run starts)")
            reusable.add(manifest["key"])
    return lines


def _input_changed(manifest: dict, reusable: set[str], index: int) -> str:
    """Why the model a finished stage started from is none the run would start it from now ('' when it is)."""
    if manifest["inputs"].get("input") in reusable:
        return ""
    return "the base model changed since it ran" if index == 1 else "its input model changed since it ran"


def _method(stage) -> str:
    from dharma_train.stages import optimization_of

    optimization = optimization_of(stage)
    return f", {optimization.method}" if optimization is not None else ""


def settings_changed(manifest: dict, stage_config, config, pairs=None) -> str:
    """What differs between a finished stage's recorded settings and these ('' when none does); `pairs`: its given
    pairs as loaded, if they were."""
    from dharma_train.manifest import describe_changes, stage_inputs
    from dharma_train.stage import StageContext
    from dharma_train.stages import build_stage

    stage = build_stage(manifest["point"], stage_config, pairs)
    context = StageContext(trainer=config.trainer, model=config.model)
    now = stage_inputs(stage, context, upstream="", pages="")
    keys = ("dharma_train", "stage", "config", "trainer", "model_settings", "files")
    before = {key: manifest["inputs"].get(key) for key in keys}
    now = {key: now.get(key) for key in keys}
    return describe_changes(before, now) if before != now else ""


def memory_lines(config) -> list[str]:
    """Each trained stage's floor (weights, gradients, optimizer state, before activations) against the budget."""
    from dharma_train.models.config import EMBEDDED, embedded_dir
    from dharma_train.stages import trained_stages
    from dharma_train.training.resources import memory_budget_bytes, parameter_counts, training_memory_bytes

    trained = trained_stages(config.stages)
    if not trained:
        return ["  no trained stage"]
    path = config.model.path
    if path in EMBEDDED:
        path = embedded_dir(path)
    total, vision = parameter_counts(path)
    budget = memory_budget_bytes(config.trainer.memory_budget_gb, config.trainer.resolved_device())
    limit = f"budget {budget / GB:.1f} GiB" if budget else "no budget on a CPU (trainer.memory_budget_gb)"
    lines = [f"  {config.model.path}: {_count_text(total)} parameters ({_count_text(vision)} vision); {limit}"]
    for name, opt in trained.items():
        needed = training_memory_bytes(total, vision, opt.method, opt.freeze_vision,
                                       config.trainer.training_dtype(opt.method), config.stages[name].kind)
        over = " OVER BUDGET" if budget and needed > budget else ""
        lines.append(f"  {name}: {needed / GB:.3g} GiB ({opt.method}){over}")
    return lines


def _memory_check(config) -> str:
    """The same refusal the run would give, from the same function."""
    from dharma_train.preflight import check_memory
    from dharma_train.artifact import base_artifact

    check_memory(base_artifact(config.model.path), config)
    return "every trained stage fits"


def _count_text(parameters: int) -> str:
    return f"{parameters / 1e9:.2f} B" if parameters >= 1e8 else f"{parameters / 1e6:.2f} M"
