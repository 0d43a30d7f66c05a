"""`python -m dharma_train plan ...`: validate and show what a run would do, then stop; trains and writes nothing.

The resolved config, the stages in order with whether each would be reused or re-run and why, where the pages
come from and how many, whether the model can be loaded here, and each trained stage's memory floor.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dharma_train.errors import DharmaError

GB = 1024**3


def plan(cfg: DictConfig) -> tuple[str, list[str]]:
    """(the plan as text, the problems that would stop the run); a config that does not validate raises."""
    from dharma_train.config import validate

    config = validate(cfg)
    problems: list[str] = []
    values = OmegaConf.to_container(cfg, resolve=True)
    values.pop("hydra", None)
    lines = ["# resolved config", OmegaConf.to_yaml(values).rstrip(), "", "# plan",
             f"output_dir: {config.output_dir}", "validation: passed"]
    if config.ablation.bases:
        from dharma_train.cli.plan_ablation import ablation_lines

        lines.append("model: each base's own, ablation.bases.NAME.path (model.path is not used)")
        _checked("machine", lambda: _machine_line(config), problems, lines)
        _checked("stage checks", lambda: _stage_checks(config), problems, lines)
        lines += ["pages (shared by every base):", *pages_lines(config)]
        lines += ablation_lines(config, problems)
    else:
        model_loadable = _checked("model", lambda: _model_line(config), problems, lines)
        _checked("machine", lambda: _machine_line(config), problems, lines)
        _checked("stage checks", lambda: _stage_checks(config), problems, lines)
        lines += ["pages:", *pages_lines(config)]
        lines += ["stages:", *stage_lines(config)]
        lines += model_lines(config, model_loadable, problems)
    lines += [f"would stop: {problem}" for problem in problems] or ["ready: nothing was trained or written"]
    return "\n".join(lines), problems


def model_lines(config, loadable: bool, problems: list[str]) -> list[str]:
    """Each trained stage's memory floor against the budget, when the model's config is here to size it."""
    if not loadable:
        return ["memory floor: not estimated (the model's config.json is not here)"]
    lines: list[str] = []
    _checked("memory floor", lambda: memory_lines(config), problems, lines)
    _checked("memory check", lambda: _memory_check(config), problems, lines)
    return lines


def _checked(title: str, describe, problems: list[str], lines: list[str]) -> bool:
    """Append a section's lines, or the refusal the run would stop with (kept in `problems`); True if it passed."""
    try:
        found = describe()
    except DharmaError as error:
        problems.append(str(error))
        lines.append(f"{title}: REFUSED: {error}")
        return False
    lines.extend([f"{title}: {found}"] if isinstance(found, str) else [f"{title}:", *found])
    return True


def _model_line(config) -> str:
    from dharma_train.models.config import TINY
    from dharma_train.preflight import check_models_reachable

    path = config.model.path
    check_models_reachable([path])
    return f"{path} (built on first use, offline)" if path == TINY else f"{path} (loadable here)"


def _machine_line(config) -> str:
    from dharma_train.preflight import check_machine

    check_machine(config)
    trainer = config.trainer
    return f"device {trainer.resolved_device()}, precision {trainer.resolved_precision()}"


def _stage_checks(config) -> str:
    """The run's own stage checks (contract, order, each stage's `check()`: a pairs file, a library, the Hub)."""
    from dharma_train.preflight import check_stages
    from dharma_train.stages import build_stage

    check_stages([build_stage(name, stage) for name, stage in config.stages.items()])
    return "passed"


def pages_lines(config) -> list[str]:
    """Where each split's pages come from, and how many when that is known without loading them."""
    data, s = config.data, config.data.synthetic
    generated = Path(config.output_dir) / "data"
    lines = []
    for split, source, count in (("train", data.train, s.train_pages), ("eval", data.eval, s.eval_pages)):
        if source:
            lines.append(f"  {split}: {source} (format {data.format}, {_count(Path(source))}; bad rows "
                         f"{'stop the run' if data.strict else 'skipped and reported in data/load_report.json'})")
        elif split == "eval" and data.split.eval:
            lines.append(f"  eval: {data.split.eval:.0%} of data.train, held out by image hash")
        else:
            earlier = generated / split
            reuse = f", reusing {_count(earlier)} in {earlier}" if (earlier / "pages.jsonl").is_file() else ""
            lines.append(f"  {split}: {count} synthetic pages generated (data.synthetic, seed {s.seed}){reuse}")
    for name, stage in config.stages.items():
        own = stage.data  # every stage kind's config names its own pages, or None for the run's
        if own == "general":
            lines.append(f"  stages.{name}: its own {s.general_pages} generated `general` pages")
        elif own:
            lines.append(f"  stages.{name}: {own} ({_count(Path(own))})")
    return lines


def _count(folder: Path) -> str:
    """'64 pages' for a page folder; other sources are counted when loaded."""
    rows = folder / "pages.jsonl"
    if rows.is_file():
        return f"{sum(1 for line in rows.open(encoding='utf-8') if line.strip())} pages"
    if folder.exists():
        return "rows counted when loaded"
    return "not found here; a Hub dataset id is checked when the run loads it"


def stage_lines(config) -> list[str]:
    """Each stage in order: run or reuse, and why, from the manifests already in output_dir, chained as the run
    chains them: a stage is reused only if it started from a model the run would give it (the base model's files, or
    a point before it, itself reused: the gate may pass over a rejected one) and its files are still those it wrote."""
    from dharma_train.artifact import base_artifact
    from dharma_train.manifest import base_inputs, changed_output, key, read_manifest
    from dharma_train.stages.dpo import given_pairs

    output_dir = Path(config.output_dir)
    lines, rerun = [], None
    reusable = {key(base_inputs(base_artifact(config.model.path)))}  # keys of the points a stage may start from
    for index, (name, stage) in enumerate(config.stages.items(), start=1):
        folder = output_dir / f"{index:02d}_{name}"
        what = f"  [{index}/{len(config.stages)}] {name} ({stage.kind}{_method(stage)})"
        manifest = read_manifest(folder)
        if rerun is not None:
            lines.append(f"{what}: runs, because {rerun} before it runs")
            continue
        if manifest is None:
            why = "it has not finished in this output_dir before" if output_dir.exists() else "new output_dir"
            lines.append(f"{what}: runs, {why}")
            rerun = name
            continue
        changed = settings_changed(manifest, stage, config) or _input_changed(manifest, reusable, index) \
            or changed_output(manifest.get("outputs"))
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


def settings_changed(manifest: dict, stage_config, config) -> str:
    """What differs between a finished stage's recorded settings and these ('' when none does)."""
    from dharma_train.manifest import describe_changes, stage_inputs
    from dharma_train.stage import StageContext
    from dharma_train.stages import build_stage

    stage = build_stage(manifest["point"], as_loaded(manifest["point"], stage_config, config))
    context = StageContext(trainer=config.trainer, model=config.model)
    now = stage_inputs(stage, context, upstream="", pages="")
    keys = ("dharma_train", "stage", "config", "trainer", "model_settings", "files")
    before = {key: manifest["inputs"].get(key) for key in keys}
    now = {key: now.get(key) for key in keys}
    return describe_changes(before, now) if before != now else ""


def as_loaded(name: str, stage_config, config):
    """The stage as the run would give it: given pairs replaced by the pair set an earlier run loaded from the same
    source into output_dir (the run loads them again at start-up, as it does the pages)."""
    from dataclasses import replace

    from dharma_train.data.pairs import is_pair_set, pair_set_report
    from dharma_train.run import stage_pairs_folder
    from dharma_train.stages.dpo import given_pairs

    given = given_pairs(stage_config)
    if given is None:
        return stage_config
    folder = stage_pairs_folder(Path(config.output_dir), name)
    if not is_pair_set(folder) or pair_set_report(folder).get("source") != str(given):
        return stage_config
    return replace(stage_config, pairs=str(folder))


def memory_lines(config) -> list[str]:
    """Each trained stage's floor (weights, gradients, optimizer state, before activations) against the budget."""
    from dharma_train.models.config import TINY
    from dharma_train.stages import trained_stages
    from dharma_train.training.resources import memory_budget_bytes, parameter_counts, training_memory_bytes

    trained = trained_stages(config.stages)
    if not trained:
        return ["  no trained stage"]
    path = config.model.path
    if path == TINY:
        from dharma_train.models.tiny import tiny_model_dir

        path = str(tiny_model_dir())
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
