"""From a validated RunConfig to a finished run: check, resolve its inputs once (run_inputs.py), run the pipeline.

An ablation (`ablation.bases`) is one ordinary run per base on shared inputs, then one comparison (run_ablation.py).
"""

from __future__ import annotations

import logging
from dharma_train import distributed
from dharma_train.config import RunConfig
from dharma_train.pipeline import Pipeline
from dharma_train.preflight import check_run
from dharma_train.run_inputs import RunInputs, build_stages, resolve_inputs
from dharma_train.stage import StageContext

log = logging.getLogger(__name__)


def execute(config: RunConfig, argv: list[str] | None = None, inputs: RunInputs | None = None) -> dict:
    """Fail on an unreachable model, a machine or memory budget it cannot fit, or bad data first, then train and
    evaluate every stage. Into an output_dir that already holds a run, finished stages are reused and an interrupted
    one resumes; another process running into it stops this one (run_lock.py). `argv`: the command-line overrides,
    recorded in run.json with the command that resumes the run. Launched on several processes, the process group
    must be started first (`distributed.start`, as the CLI does). `inputs`: inputs already resolved (an
    ablation's, shared by its bases); by default the config's, resolved here."""
    with run_lock(config):
        return _execute(config, argv, inputs)


def run_lock(config: RunConfig):
    """The run folder's lock, taken by rank 0 for all processes of a launch."""
    from contextlib import nullcontext

    from dharma_train.run_lock import hold_run_lock

    if not distributed.is_main():
        return nullcontext()
    return hold_run_lock(config.output_dir, config.trainer.lock_wait_seconds)


def _execute(config: RunConfig, argv: list[str] | None, inputs: RunInputs | None) -> dict:
    from dharma_train.reporting.run_record import write_run_record

    base = check_run(config)  # every check that needs no page, before any is generated
    distributed.on_main(write_run_record, config, argv)
    inputs = inputs or resolve_inputs(config)
    log.info("pages: %d for training (%s), %d for evaluation (%s)", len(inputs.train), inputs.train.root,
             len(inputs.eval_pages), inputs.eval_pages.root)
    pipeline = Pipeline(
        stages=build_stages(config, inputs.stage_pairs),
        evaluation=config.evaluation,
        gate=config.pipeline,
        context=StageContext(trainer=config.trainer, model=config.model, tracking=config.tracking,
                             run_name=config.name),
    )
    return pipeline.run(base, inputs.train, inputs.eval_pages, config.output_dir, inputs.stage_pages)
