"""An ablation (`ablation.bases`): the same stages from several bases, each an ordinary run (run.execute) on inputs
resolved once for all of them, then one comparison table and plot."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from dharma_train.ablation import AblationConfig
from dharma_train.artifact import ModelArtifact
from dharma_train.config import RunConfig
from dharma_train.models.config import EMBEDDED
from dharma_train.preflight import check_stages
from dharma_train.run import execute, run_lock
from dharma_train.run_inputs import resolve_inputs
from dharma_train.stages import build_stage

log = logging.getLogger(__name__)


def base_config(config: RunConfig, name: str, train: str, eval_pages: str) -> RunConfig:
    """The ordinary run of one base: its model, its stages, the shared pages (recorded in its run.json), its own
    folder."""
    base = config.ablation.bases[name]
    return replace(
        config, name=f"{config.name}-{name}", output_dir=str(Path(config.output_dir) / name),
        model=replace(config.model, path=base.path), data=replace(config.data, train=train, eval=eval_pages),
        stages={stage: settings for stage, settings in config.stages.items() if stage not in base.skip},
        ablation=AblationConfig(),
    )


def unreachable_bases(config: RunConfig) -> dict[str, str]:
    """Each base whose model cannot be loaded here, with why, in words naming its own key (`ablation.bases.NAME.path`,
    the one an ablation reads; `model.path` it ignores)."""
    from dharma_train.errors import ModelUnavailableError
    from dharma_train.models.loading import check_available

    found = {}
    for name, base in config.ablation.bases.items():
        if base.path in EMBEDDED:
            continue
        try:
            check_available(ModelArtifact(path=base.path), setting=f"ablation.bases.{name}.path")
        except ModelUnavailableError as error:
            found[name] = f"ablation.bases.{name}.path: {error}"
    return found


def check_bases_reachable(config: RunConfig) -> None:
    """Every unreachable base fails the run at once, all of them named (not only the first)."""
    from dharma_train.errors import ModelUnavailableError

    unreachable = unreachable_bases(config)
    if unreachable:
        raise ModelUnavailableError(f"{len(unreachable)} of {len(config.ablation.bases)} ablation bases cannot be "
                                    f"loaded here: " + " | ".join(unreachable.values()))


def run_ablation(config: RunConfig) -> list[dict]:
    """Check every base, resolve the inputs once (pages, each stage's own pages and given pairs, in the ablation's
    folder), run each base, then compare; the ablation's folder is locked throughout, each base's while it runs."""
    with run_lock(config):
        return _run_ablation(config)


def _run_ablation(config: RunConfig) -> list[dict]:
    from dharma_train.reporting.comparison import compare, write_comparison

    check_bases_reachable(config)  # before any base trains
    config.trainer.check_hardware()
    check_stages([build_stage(name, stage) for name, stage in config.stages.items()])  # before the pages
    inputs = resolve_inputs(config, [replace(config.model, path=base.path)  # every row fits every base
                                     for base in config.ablation.bases.values()])  # the same on every run
    runs = {}
    for number, name in enumerate(config.ablation.bases, start=1):
        run = base_config(config, name, str(inputs.train.root), str(inputs.eval_pages.root))
        runs[name] = run.output_dir
        # An ordinary run: each stage is reused or re-run by its key (manifest.py), as in any single run, so a changed
        # setting re-trains that stage and those after it, and a finished base re-uses every stage and evaluation.
        log.info("base %d/%d %s (%s): stages %s", number, len(config.ablation.bases), name, run.model.path,
                 list(run.stages))
        execute(run, inputs=inputs)
    rows = compare(runs)
    written = write_comparison(rows, config.output_dir, runs)
    log.info("comparison: %s", ", ".join(str(p) for p in written))
    return rows
