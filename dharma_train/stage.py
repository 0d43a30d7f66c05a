"""The Stage contract: a model artifact and pages in, a saved model artifact and its metrics out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import PageSet
from dharma_train.models.config import ModelConfig
from dharma_train.tracking import TrackingConfig
from dharma_train.training import TrainerConfig


@dataclass
class StageContext:
    """What every stage of one run shares: hardware, model loading settings, tracking."""

    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    run_name: str = "dharma_train"


@dataclass(frozen=True)
class StageResult:
    name: str
    artifact: ModelArtifact
    metrics: dict


class Stage(Protocol):
    """Anything with a name that turns one saved model into another saved model.

    A stage may also define `check()`, which the pipeline calls for every stage before any model loads, to fail
    fast on inputs it can read cheaply (a pairs file, say); a dataclass `config`, whose values (with the stage's
    inputs) decide whether a re-run may reuse its finished output (manifest.py); and `input_files()`, the files
    beyond its pages that its output depends on. A stage whose output has its input's weights (export) sets
    `evaluates_output = False`, and the pipeline records it without evaluating it again.
    """

    name: str

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        ...
