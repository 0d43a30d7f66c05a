"""Pipeline stages. Each module holds one stage and its typed config; STAGES maps a config `kind` to the stage."""

from dharma_train.stages.dpo import DPOStage, DPOStageConfig
from dharma_train.stages.export import ExportStage, ExportStageConfig
from dharma_train.stages.grpo import GRPOStage, GRPOStageConfig
from dharma_train.stages.quantize import QuantizeStage, QuantizeStageConfig
from dharma_train.stages.sft import SFTStage, SFTStageConfig
from dharma_train.training.config import OptimizationConfig

STAGES = {stage.kind: stage for stage in (SFTStage, DPOStage, GRPOStage, QuantizeStage, ExportStage)}
STAGE_CONFIGS = {kind: stage.config_class for kind, stage in STAGES.items()}
TRAINED_CONFIGS = (SFTStageConfig, DPOStageConfig, GRPOStageConfig)  # stage configs that train (an `optimization`)
TRAINING_KINDS = (SFTStage.kind, DPOStage.kind, GRPOStage.kind)  # their kinds, as a stage's `kind` names it


def optimization_of(config) -> OptimizationConfig | None:
    """The training settings of a stage config that trains (SFT, DPO, GRPO); None for one that does not."""
    return config.optimization if isinstance(config, TRAINED_CONFIGS) else None


def trained_stages(stages: dict) -> dict[str, OptimizationConfig]:
    """Each training stage's name and optimization settings, in run order."""
    return {name: optimization_of(config) for name, config in stages.items() if optimization_of(config) is not None}


def mining_batch_of(config) -> int | None:
    """The batch a stage config's pair mining generates with; None when it mines nothing."""
    return config.mining.batch_size if isinstance(config, DPOStageConfig) and config.pairs == "mined" else None


def build_stage(name: str, config, pairs=None):
    """The stage object for a validated stage config; `pairs`: a DPO stage's given pairs as a run loaded them."""
    if pairs is not None:
        return DPOStage(name, config, pairs)
    return STAGES[config.kind](name, config)


__all__ = ["DPOStage", "DPOStageConfig", "ExportStage", "ExportStageConfig", "GRPOStage", "GRPOStageConfig",
           "QuantizeStage", "QuantizeStageConfig",
           "SFTStage", "SFTStageConfig", "STAGES", "STAGE_CONFIGS", "TRAINED_CONFIGS", "TRAINING_KINDS", "build_stage", "mining_batch_of",
           "optimization_of", "trained_stages"]
