"""`python -m dharma_train plan ...`: validate and show what a run would do, then stop; trains and writes nothing.

The resolved config, the stages in order with whether each would be reused or re-run and why, where the pages
come from and how many, whether the model can be loaded here, and each trained stage's memory floor.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dharma_train.cli.plan_stages import checked, model_lines, stage_lines
from dharma_train.run_folder import RunFolder
from dharma_train.run_inputs import loaded_pair_sets

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
        checked("machine", lambda: _machine_line(config), problems, lines)
        checked("stage checks", lambda: _stage_checks(config), problems, lines)
        lines += ["pages (shared by every base):", *pages_lines(config)]
        lines += ablation_lines(config, problems)
    else:
        model_loadable = checked("model", lambda: _model_line(config), problems, lines)
        checked("machine", lambda: _machine_line(config), problems, lines)
        checked("stage checks", lambda: _stage_checks(config), problems, lines)
        lines += ["pages:", *pages_lines(config)]
        lines += ["stages:", *stage_lines(config, loaded_pair_sets(config))]
        lines += model_lines(config, model_loadable, problems)
    lines += [f"would stop: {problem}" for problem in problems] or ["ready: nothing was trained or written"]
    return "\n".join(lines), problems


def _model_line(config) -> str:
    from dharma_train.models.config import EMBEDDED, TINY
    from dharma_train.preflight import check_models_reachable

    path = config.model.path
    check_models_reachable([path])
    if path in EMBEDDED:
        return f"{path} ({'built on first use' if path == TINY else 'shipped with dharma_train'}, offline)"
    return f"{path} (loadable here)"


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
    generated = RunFolder(config.output_dir).data
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


