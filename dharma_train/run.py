"""From a validated RunConfig to a finished run: check the model, prepare pages, run the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

from dharma_train import distributed
from dharma_train.artifact import ModelArtifact
from dharma_train.config import RunConfig
from dharma_train.data.loading import load_splits
from dharma_train.data.pages import PageSet
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
    """The configured sources loaded and checked (report in data/load_report.json); a missing split is generated
    (by rank 0 alone)."""
    data = config.data
    given = load_splits(data, Path(config.output_dir) / "data")
    if "train" not in given or "eval" not in given:
        from dharma_train.data.synthetic import generate_splits

        s = data.synthetic
        generated = distributed.on_main(generate_splits, Path(config.output_dir) / "data", n_train=s.train_pages,
                                        n_eval=s.eval_pages, seed=s.seed, width=s.width, height=s.height)
        given = {"train": given.get("train", generated[0]), "eval": given.get("eval", generated[1])}
    return given["train"], given["eval"]


def execute(config: RunConfig) -> dict:
    """Fail on an unreachable model or bad data first, then train and evaluate every stage."""
    from dharma_train.models.loading import check_available

    if config.model.path != TINY:
        check_available(ModelArtifact(path=config.model.path))
    config.trainer.check_hardware()
    distributed.start(cpu=config.trainer.resolved_device() == "cpu")
    config.trainer.hardware.check(config.trainer.resolved_device(), distributed.world_size(), distributed.launched(),
                                  {f"stages.{name}": stage.optimization.batch_size
                                   for name, stage in config.stages.items()})
    train, eval_pages = prepare_pages(config)
    log.info("pages: %d for training (%s), %d for evaluation (%s)", len(train), train.root, len(eval_pages),
             eval_pages.root)
    base = distributed.on_main(base_artifact, config.model.path)  # the tiny model is built once, by rank 0
    pipeline = Pipeline(
        stages=[build_stage(name, stage) for name, stage in config.stages.items()],
        evaluation=config.evaluation,
        context=StageContext(trainer=config.trainer, model=config.model, tracking=config.tracking,
                             run_name=config.name),
    )
    return pipeline.run(base, train, eval_pages, config.output_dir)
