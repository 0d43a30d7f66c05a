"""dharma_train: specialize a vision-language model for document OCR, one measured stage at a time.

    from dharma_train import Pipeline, SFTStage, SFTStageConfig, DPOStage, tiny_model, generate_splits
"""

from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import Page, PageSet, load_pages
from dharma_train.data.pairs import PreferencePair, load_pairs, loop_pairs
from dharma_train.data.schema import PageAnswer, parse_answer
from dharma_train.errors import ConfigError, DataError, DharmaError, ModelUnavailableError
from dharma_train.evaluation.hook import EvalConfig, evaluate
from dharma_train.pipeline import Pipeline
from dharma_train.stage import Stage, StageContext, StageResult
from dharma_train.stages import (
    DPOStage,
    DPOStageConfig,
    ExportStage,
    ExportStageConfig,
    QuantizeStage,
    QuantizeStageConfig,
    SFTStage,
    SFTStageConfig,
)
from dharma_train.training.config import LoraSettings, OptimizationConfig, TrainerConfig

__version__ = "0.1.0"


def tiny_model(cache_dir=None) -> ModelArtifact:
    """The embedded random-init Qwen2.5-VL as an artifact, built and cached on first use."""
    from dharma_train.models.tiny import tiny_model_dir

    return ModelArtifact(path=str(tiny_model_dir(cache_dir)))


def generate_splits(out_dir, n_train: int = 64, n_eval: int = 16, seed: int = 0, **kwargs):
    """Synthetic pt-BR train and eval pages (see dharma_train.data.synthetic.generate)."""
    from dharma_train.data.synthetic.generate import generate_splits as _generate

    return _generate(out_dir, n_train=n_train, n_eval=n_eval, seed=seed, **kwargs)


__all__ = [
    "ConfigError", "DPOStage", "DPOStageConfig", "DataError", "DharmaError", "EvalConfig", "ExportStage",
    "ExportStageConfig", "LoraSettings", "ModelArtifact", "ModelUnavailableError", "OptimizationConfig", "Page",
    "PageAnswer", "PageSet", "Pipeline", "PreferencePair", "QuantizeStage", "QuantizeStageConfig", "SFTStage",
    "SFTStageConfig", "Stage", "StageContext", "StageResult", "TrainerConfig",
    "evaluate", "generate_splits", "load_pages", "load_pairs", "loop_pairs", "parse_answer", "tiny_model",
]
