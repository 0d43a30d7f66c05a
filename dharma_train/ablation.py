"""Ablation: the same stages from several starting models, on the same pages, then one comparison.

A recipe lists its bases under `ablation.bases` (config group `ablation`); `python -m dharma_train recipe=NAME`
then runs each base into `output_dir/<base>/` and writes `output_dir/comparison.{md,csv}` and two plots.
A base may leave out stages it already has (an OCR specialist skips the general-OCR rung).

    python -m dharma_train recipe=tiny_ablation
    python -m dharma_train recipe=ablation_3b output_dir=runs/abl   # again with the same output_dir to resume

Shared: the generated pages (once, in `output_dir/data`, or the given folders), hence the evaluation set.
Resumed base by base: a base whose summary.json already holds every one of its points is not run again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dharma_train.config import RunConfig

log = logging.getLogger(__name__)

BASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
DATA_FOLDER = "data"


@dataclass
class AblationBase:
    """One starting model of an ablation."""

    path: str  # a hub id, a local folder, or "tiny"
    skip: list[str] = field(default_factory=list)  # stages of the recipe this base leaves out


@dataclass
class AblationConfig:
    """`conf/ablation/none.yaml`. No bases: an ordinary run of `model.path`. Bases: one run each, then a comparison."""

    bases: dict[str, AblationBase] = field(default_factory=dict)

    def __post_init__(self):
        for name in self.bases:
            if not BASE_NAME.fullmatch(name) or name == DATA_FOLDER:
                raise ValueError(f"ablation.bases.{name}: a base name is a folder name of letters, digits, '_', "
                                 f"'.', '-' (and not '{DATA_FOLDER}')")

    def check_stages(self, stage_names: list[str]) -> None:
        """Every skipped stage exists, and every base keeps at least one stage."""
        for name, base in self.bases.items():
            unknown = sorted(set(base.skip) - set(stage_names))
            if unknown:
                raise ValueError(f"ablation.bases.{name}.skip names unknown stage(s) {unknown}; stages: {stage_names}")
            if not set(stage_names) - set(base.skip):
                raise ValueError(f"ablation.bases.{name}.skip leaves no stage to run")


def base_config(config: RunConfig, name: str, train: str, eval_pages: str) -> RunConfig:
    """The ordinary run of one base: its model, its stages, the shared pages, its own folder."""
    base = config.ablation.bases[name]
    return replace(
        config, name=f"{config.name}-{name}", output_dir=str(Path(config.output_dir) / name),
        model=replace(config.model, path=base.path), data=replace(config.data, train=train, eval=eval_pages),
        stages={stage: settings for stage, settings in config.stages.items() if stage not in base.skip},
        ablation=AblationConfig(),
    )


def finished(run_dir: str | Path, stage_names: list[str]) -> bool:
    """True when run_dir/summary.json holds the base point and every stage, in order (a stage that is recorded
    without an evaluation, such as export, is listed under `not_evaluated`)."""
    from dharma_train.comparison import read_summary
    from dharma_train.errors import DataError

    try:
        summary = read_summary(run_dir)
    except DataError:
        return False
    not_evaluated = {entry["stage"] for entry in summary.get("not_evaluated", [])}
    return [entry["stage"] for entry in summary["entries"]] == \
        [name for name in ["base", *stage_names] if name not in not_evaluated]


def shared_pages(config: RunConfig) -> tuple[str, str]:
    """Train and eval folders every base uses: the given ones, pages generated earlier, or new ones."""
    from dharma_train.data.pages import PAGES_FILE
    from dharma_train.run import prepare_pages

    data = config.data
    folder = Path(config.output_dir) / DATA_FOLDER
    earlier = {split: folder / split for split in ("train", "eval") if (folder / split / PAGES_FILE).is_file()}
    train = data.train or earlier.get("train")
    eval_pages = data.eval or earlier.get("eval")
    if train and eval_pages:
        log.info("shared pages: %s (train), %s (eval)", train, eval_pages)
        return str(train), str(eval_pages)
    generated_train, generated_eval = prepare_pages(config)
    return str(generated_train.root), str(generated_eval.root)


def run_ablation(config: RunConfig) -> list[dict]:
    """Check every base, share the pages, run each unfinished base, then write the comparison."""
    from dharma_train.artifact import ModelArtifact
    from dharma_train.comparison import compare, write_comparison
    from dharma_train.models.config import TINY
    from dharma_train.models.loading import check_available
    from dharma_train.run import execute

    for base in config.ablation.bases.values():  # an unreachable base fails before any base trains
        if base.path != TINY:
            check_available(ModelArtifact(path=base.path))
    config.trainer.check_hardware()
    train, eval_pages = shared_pages(config)
    runs = {}
    for number, name in enumerate(config.ablation.bases, start=1):
        run = base_config(config, name, train, eval_pages)
        runs[name] = run.output_dir
        if finished(run.output_dir, list(run.stages)):
            log.info("base %d/%d %s: finished earlier in %s, not run again", number, len(config.ablation.bases), name,
                     run.output_dir)
            continue
        log.info("base %d/%d %s (%s): stages %s", number, len(config.ablation.bases), name, run.model.path,
                 list(run.stages))
        execute(run)
    rows = compare(runs)
    written = write_comparison(rows, config.output_dir)
    log.info("comparison: %s", ", ".join(str(p) for p in written))
    return rows
