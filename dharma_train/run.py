"""From a validated RunConfig to a finished run: check the model, prepare pages, run the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

from dharma_train.artifact import ModelArtifact
from dharma_train.config import RunConfig
from dharma_train.data.pages import PageSet, load_pages
from dharma_train.models.config import TINY
from dharma_train.pipeline import Pipeline
from dharma_train.stage import StageContext
from dharma_train.stages import build_stage

log = logging.getLogger(__name__)


def base_artifact(path: str) -> ModelArtifact:
    """The starting model: the embedded tiny model (built and cached on first use), a hub id or a folder."""
    if path == TINY:
        from dharma_train.models.tiny import tiny_model_dir

        return ModelArtifact(path=str(tiny_model_dir()))
    return ModelArtifact(path=path)


def prepare_pages(config: RunConfig) -> tuple[PageSet, PageSet]:
    """The given page folders, with any missing split generated into the run folder."""
    data = config.data
    given = {split: load_pages(path) for split, path in (("train", data.train), ("eval", data.eval)) if path}
    if len(given) < 2:
        from dharma_train.data.synthetic import generate_splits

        s = data.synthetic
        generated = generate_splits(Path(config.output_dir) / "data", n_train=s.train_pages, n_eval=s.eval_pages,
                                    seed=s.seed, width=s.width, height=s.height)
        given = {"train": given.get("train", generated[0]), "eval": given.get("eval", generated[1])}
    return given["train"], given["eval"]


def execute(config: RunConfig, argv: list[str] | None = None) -> dict:
    """Fail on an unreachable model, a memory budget it cannot fit or bad data first, then train and evaluate every
    stage. Into an output_dir that already holds a run, finished stages are reused and an interrupted one resumes.
    `argv`: the command-line overrides, recorded in run.json with the command that resumes the run."""
    from dharma_train.environment import write_run_record
    from dharma_train.models.loading import check_available
    from dharma_train.resources import check_training_memory

    if config.model.path != TINY:
        check_available(ModelArtifact(path=config.model.path))
    config.trainer.check_hardware()
    base = base_artifact(config.model.path)
    check_training_memory(base.path, config.stages, config.trainer)
    write_run_record(config, argv)
    train, eval_pages = prepare_pages(config)
    log.info("pages: %d for training (%s), %d for evaluation (%s)", len(train), train.root, len(eval_pages),
             eval_pages.root)
    pipeline = Pipeline(
        stages=[build_stage(name, stage) for name, stage in config.stages.items()],
        evaluation=config.evaluation,
        context=StageContext(trainer=config.trainer, model=config.model, tracking=config.tracking,
                             run_name=config.name),
    )
    return pipeline.run(base, train, eval_pages, config.output_dir)
