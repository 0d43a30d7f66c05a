"""Pipeline stages. Each module holds one stage and its typed config; STAGES maps a config `kind` to the stage."""

from dharma_train.stages.dpo import DPOStage, DPOStageConfig
from dharma_train.stages.export import ExportStage, ExportStageConfig
from dharma_train.stages.quantize import QuantizeStage, QuantizeStageConfig
from dharma_train.stages.sft import SFTStage, SFTStageConfig

STAGES = {stage.kind: stage for stage in (SFTStage, DPOStage, QuantizeStage, ExportStage)}
STAGE_CONFIGS = {kind: stage.config_class for kind, stage in STAGES.items()}


def build_stage(name: str, config):
    """The stage object for a validated stage config."""
    return STAGES[config.kind](name, config)


__all__ = ["DPOStage", "DPOStageConfig", "ExportStage", "ExportStageConfig", "QuantizeStage", "QuantizeStageConfig",
           "SFTStage", "SFTStageConfig", "STAGES", "STAGE_CONFIGS", "build_stage"]
