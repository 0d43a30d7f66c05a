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

# Page sets a stage can name as its `data` instead of a folder; each is generated from `data.synthetic`.
GENERATED_SETS = ("general",)  # mixed-language pages with Markdown answers, for the general-OCR rung


def base_artifact(path: str) -> ModelArtifact:
    """The starting model: the embedded tiny model (built and cached on first use), a hub id or a folder."""
    if path == TINY:
        from dharma_train.models.tiny import tiny_model_dir

        return ModelArtifact(path=str(tiny_model_dir()))
    return ModelArtifact(path=path)


def prepare_pages(config: RunConfig) -> tuple[PageSet, PageSet]:
    """The configured sources loaded and checked (report in data/load_report.json); a missing split is generated
    (by rank 0 alone); then each stage's own generated data (see resolve_stage_data)."""
    data = config.data
    given = distributed.on_main(load_splits, data, Path(config.output_dir) / "data")  # checked once, by rank 0
    if "train" not in given or "eval" not in given:
        from dharma_train.data.synthetic import generate_splits

        s = data.synthetic
        generated = distributed.on_main(generate_splits, Path(config.output_dir) / "data", n_train=s.train_pages,
                                        n_eval=s.eval_pages, seed=s.seed, width=s.width, height=s.height,
                                        families=s.families, max_words=s.max_words, workers=s.workers)
        given = {"train": given.get("train", generated[0]), "eval": given.get("eval", generated[1])}
    resolve_stage_data(config)
    return given["train"], given["eval"]


def resolve_stage_data(config: RunConfig) -> None:
    """A stage whose `data` names a generated set (GENERATED_SETS) gets that set generated into
    `output_dir/data/<name>` and its `data` replaced by the folder, so the pipeline and stage.json see a folder.
    Any other value is a page folder, left as it is (write `./general` for a folder of that name)."""
    from dharma_train.data.synthetic import generate_pages, named_seed

    s = config.data.synthetic
    generated: dict[str, str] = {}
    for stage in config.stages.values():
        name = getattr(stage, "data", None)
        if name not in GENERATED_SETS:
            continue
        if name not in generated:
            folder = Path(config.output_dir) / "data" / name
            distributed.on_main(generate_pages, folder, s.general_pages, seed=named_seed(s.seed, name), width=s.width,
                                height=s.height, task=name, id_prefix=name, max_words=s.general_max_words,
                                workers=s.workers)
            generated[name] = str(folder)
        stage.data = generated[name]


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
    distributed.start(cpu=config.trainer.resolved_device() == "cpu")
    config.trainer.hardware.check(config.trainer.resolved_device(), distributed.world_size(), distributed.launched(),
                                  {f"stages.{name}": stage.optimization.batch_size
                                   for name, stage in config.stages.items() if hasattr(stage, "optimization")})
    base = distributed.on_main(base_artifact, config.model.path)  # the tiny model is built once, by rank 0
    check_training_memory(base.path, config.stages, config.trainer)
    distributed.on_main(write_run_record, config, argv)
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
