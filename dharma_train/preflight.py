"""Every check that can fail before any model loads, in one place: models reachable, hardware, memory, stage inputs.

Typed values were checked when the config was validated (config.py); these checks need this machine or the files.
"""

from __future__ import annotations

from dharma_train import distributed
from dharma_train.artifact import ModelArtifact
from dharma_train.models.config import TINY
from dharma_train.stage import check_stage


def check_models_reachable(paths: list[str]) -> None:
    """A hub id or folder that cannot be loaded here fails now, with one message (the tiny model is built here)."""
    from dharma_train.models.loading import check_available

    for path in paths:
        if path != TINY:
            check_available(ModelArtifact(path=path))


def check_machine(config) -> None:
    """The trainer's device and precision exist here, and the libraries of what was asked for (lora_4bit); the
    hardware group fits the processes launched."""
    from dharma_train.training.performance.apply import check_bitsandbytes

    config.trainer.check_hardware()
    check_bitsandbytes(config.trainer.performance)
    config.trainer.hardware.check(config.trainer.resolved_device(), distributed.world_size(), distributed.launched(),
                                  {f"stages.{name}": stage.optimization.batch_size
                                   for name, stage in config.stages.items() if hasattr(stage, "optimization")})


def check_memory(base: ModelArtifact, config) -> None:
    """A stage whose memory floor exceeds the budget is refused before any weights load."""
    from dharma_train.training.resources import check_training_memory

    check_training_memory(base.path, config.stages, config.trainer)


def check_stages(stages: list) -> None:
    """Each stage honours the Stage contract and its cheap input checks pass (a pairs file, a hub token)."""
    for stage in stages:
        check_stage(stage)
    for stage in stages:
        stage.check()
