"""Training stages. Each module holds one stage and its typed config; STAGES maps a config `kind` to both."""

from dharma_train.stages.dpo import DPOStage, DPOStageConfig
from dharma_train.stages.sft import SFTStage, SFTStageConfig

STAGES = {"sft": SFTStage, "dpo": DPOStage}
STAGE_CONFIGS = {"sft": SFTStageConfig, "dpo": DPOStageConfig}


def build_stage(name: str, config):
    """The stage object for a validated stage config."""
    return STAGES[config.kind](name, config)


__all__ = ["DPOStage", "DPOStageConfig", "SFTStage", "SFTStageConfig", "STAGES", "STAGE_CONFIGS", "build_stage"]
