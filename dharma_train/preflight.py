"""Every check that can fail before any page is generated or any model loads, in one place: models reachable,
hardware, stages (contract, order, their own cheap checks), memory. `check_run` runs them all, first, for a run and
for `plan`; the Pipeline runs `check_stages` for Python callers; `Stage.check_pages` runs once the pages are loaded.

Typed values were checked when the config was validated (config.py); these checks need this machine or the files.
"""

from __future__ import annotations

from dharma_train import distributed
from dharma_train.artifact import ModelArtifact
from dharma_train.errors import ConfigError
from dharma_train.models.config import EMBEDDED
from dharma_train.stage import check_stage
from dharma_train.stages import TRAINING_KINDS, ExportStage, QuantizeStage, build_stage, trained_stages


def check_run(config) -> ModelArtifact:
    """The run's pre-flight, before any page is generated or weights load; returns the base model (the tiny one is
    built here, by rank 0). Needs the process group started (the CLI starts it)."""
    from dharma_train.artifact import base_artifact

    check_models_reachable([config.model.path])
    check_machine(config)
    check_stages([build_stage(name, stage) for name, stage in config.stages.items()])
    base = distributed.on_main(base_artifact, config.model.path)
    check_memory(base, config)
    return base


def check_models_reachable(paths: list[str]) -> None:
    """A hub id or folder that cannot be loaded here fails now, with one message (the tiny model is built here)."""
    from dharma_train.models.loading import check_available

    for path in paths:
        if path not in EMBEDDED:
            check_available(ModelArtifact(path=path))


def check_machine(config) -> None:
    """The trainer's device and precision exist here, and the libraries of what was asked for (lora_4bit); the
    hardware group fits the processes launched and the GRPO stages' sampling engine."""
    from dharma_train.training.performance.apply import check_bitsandbytes

    from dharma_train.stages.grpo import GRPOStageConfig, sampling_engine

    config.trainer.check_hardware()
    check_bitsandbytes(config.trainer.performance)
    for stage in config.stages.values():
        if isinstance(stage, GRPOStageConfig):
            sampling_engine(stage, config.trainer)  # the continuous engine asked for on sharded parameters
    config.trainer.hardware.check(config.trainer.resolved_device(), distributed.world_size(), distributed.launched(),
                                  {f"stages.{name}": stage.optimization.batch_size
                                   for name, stage in config.stages.items() if hasattr(stage, "optimization")})


def check_memory(base: ModelArtifact, config) -> None:
    """A stage whose memory floor exceeds the budget is refused before any weights load."""
    from dharma_train.training.resources import check_training_memory

    trained = {name: (config.stages[name].kind, opt) for name, opt in trained_stages(config.stages).items()}
    check_training_memory(base.path, trained, config.trainer)


def check_stages(stages: list) -> None:
    """Each stage honours the Stage contract, the ladder's order makes sense, and each stage's cheap input checks
    pass (a pairs file, a hub token)."""
    for stage in stages:
        check_stage(stage)
    check_order([(stage.name, stage.kind) for stage in stages])
    for stage in stages:
        stage.check()


def check_order(stages: list[tuple[str, str]]) -> None:
    """Names are unique (each names its folder), nothing trains or quantizes again after a quantize stage, and
    export comes last: each of these would otherwise fail, or export the wrong model, only after hours of work."""
    seen: dict[str, int] = {}
    quantized_by = None
    for position, (name, kind) in enumerate(stages, start=1):
        if name in seen:
            raise ConfigError(f"two stages are named {name!r} (stages {seen[name]} and {position}): each stage needs a "
                              f"name of its own, which names its folder NN_{name}")
        seen[name] = position
        if quantized_by and kind in (*TRAINING_KINDS, QuantizeStage.kind):
            raise ConfigError(f"stage {name} ({kind}) comes after the quantize stage {quantized_by}: it would start "
                              f"from quantized weights; put every training stage before quantize")
        if kind == QuantizeStage.kind:
            quantized_by = name
        if kind == ExportStage.kind and position < len(stages):
            raise ConfigError(f"stage {name} (export) must be the last stage: it ships the model the run ends on, "
                              f"but {stages[position][0]} comes after it")
