"""dharma_train: specialize a vision-language model for document OCR, one measured stage at a time.

    from dharma_train import Pipeline, SFTStage, SFTStageConfig, DPOStage, tiny_model, generate_splits
"""

from __future__ import annotations

from importlib import import_module

# Public names -> the module that defines them, imported on first use (PEP 562): `python -m dharma_train --help`
# and the CLI's error messages then start without importing torch.
_EXPORTS = {
    "dharma_train.artifact": ["ModelArtifact"],
    "dharma_train.data.pages": ["Page", "PageSet", "load_pages"],
    "dharma_train.data.pairs": ["PreferencePair", "load_pairs", "loop_pairs"],
    "dharma_train.data.schema": ["PageAnswer", "parse_answer"],
    "dharma_train.errors": ["ConfigError", "DataError", "DharmaError", "ModelUnavailableError"],
    "dharma_train.evaluation.hook": ["EvalConfig", "evaluate"],
    "dharma_train.pipeline": ["Pipeline"],
    "dharma_train.stage": ["Stage", "StageContext", "StageResult"],
    "dharma_train.stages": ["DPOStage", "DPOStageConfig", "ExportStage", "ExportStageConfig", "GRPOStage",
                            "GRPOStageConfig", "QuantizeStage", "QuantizeStageConfig", "SFTStage", "SFTStageConfig"],
    "dharma_train.training.config": ["LoraSettings", "OptimizationConfig", "TrainerConfig"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    """Import a public name's module when the name is first used."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'dharma_train' has no attribute {name!r}")
    value = getattr(import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


__version__ = "0.1.0"


def tiny_model(cache_dir=None) -> ModelArtifact:
    """The embedded random-init Qwen2.5-VL as an artifact, built and cached on first use."""
    from dharma_train.artifact import ModelArtifact
    from dharma_train.models.tiny import tiny_model_dir

    return ModelArtifact(path=str(tiny_model_dir(cache_dir)))


def generate_splits(out_dir, n_train: int = 64, n_eval: int = 16, seed: int = 0, **kwargs):
    """Synthetic pt-BR train and eval pages (see dharma_train.data.synthetic.generate)."""
    from dharma_train.data.synthetic.generate import generate_splits as _generate

    return _generate(out_dir, n_train=n_train, n_eval=n_eval, seed=seed, **kwargs)


__all__ = [
    "ConfigError", "DPOStage", "DPOStageConfig", "DataError", "DharmaError", "EvalConfig", "ExportStage",
    "ExportStageConfig", "GRPOStage", "GRPOStageConfig", "LoraSettings", "ModelArtifact", "ModelUnavailableError", "OptimizationConfig", "Page",
    "PageAnswer", "PageSet", "Pipeline", "PreferencePair", "QuantizeStage", "QuantizeStageConfig", "SFTStage",
    "SFTStageConfig", "Stage", "StageContext", "StageResult", "TrainerConfig",
    "evaluate", "generate_splits", "load_pages", "load_pairs", "loop_pairs", "parse_answer", "tiny_model",
]
