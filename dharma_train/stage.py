"""The Stage contract: a model artifact and pages in, a saved model artifact and its metrics out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import PageSet
from dharma_train.errors import ConfigError
from dharma_train.models.config import ModelConfig
from dharma_train.reporting.tracking import TrackingConfig
from dharma_train.training.config import TrainerConfig
from dharma_train.typed_config import typed


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
    skipped: str | None = None  # why the stage passed its input on untrained (artifact is its input); None: trained


class Stage(Protocol):
    """Anything that turns one saved model into another saved model: every member the pipeline uses is named here.

    Subclass it to inherit the defaults below, or define every member yourself (structural typing).
    """

    name: str  # the stage's folder is NN_<name>
    config: Any = None  # a dataclass whose values (with the inputs) decide whether a re-run may reuse its output
    evaluates_output: ClassVar[bool] = True  # False when the output has its input's weights (export): not evaluated

    @property
    def kind(self) -> str:
        """What it does (sft, dpo, quantize, export), shown in summary.json, the report and the model card."""
        return type(self).__name__

    def check(self) -> None:
        """Fail fast on inputs readable cheaply (a pairs file, say); called for every stage before any model loads."""

    def check_pages(self, pages: PageSet) -> None:
        """Fail fast on what its pages cannot give (too few calibration pages, say): called once every stage's
        pages are loaded, before the base model is evaluated."""

    def own_pages(self) -> str | None:
        """The page source its config names instead of the run's training pages (None: the run's); the run loads
        it and hands the pages to Pipeline.run (`stage_pages`)."""
        return None

    def input_files(self) -> dict[str, str]:
        """Files beyond the pages that the output depends on, by the config setting that names them: they enter
        the stage's key by content, not by where they lie."""
        return {}

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        ...


STAGE_MEMBERS = ("name", "kind", "config", "evaluates_output", "check", "check_pages", "own_pages", "input_files",
                 "run")


def check_stage(stage: object) -> None:
    """Refuse an object that lacks a member of the contract, naming what is missing (before any work starts)."""
    missing = [member for member in STAGE_MEMBERS if not hasattr(stage, member)]
    if missing:
        raise ConfigError(f"{type(stage).__name__} is not a Stage: it lacks {missing} "
                          f"(subclass dharma_train.Stage to inherit the defaults)")


def stage_config(name: str, config, schema: type):
    """A stage's typed config from what Python code passes: None (the defaults), the dataclass itself, or a dict
    checked exactly as the YAML `stages.NAME` would be (unknown keys and bad values name the key)."""
    if config is None:
        return schema()
    if isinstance(config, schema):
        return config
    if isinstance(config, dict):
        return typed(f"stages.{name}", schema, config)
    raise ConfigError(f"stage {name}: config must be a {schema.__name__} or a dict of its fields, "
                      f"got {type(config).__name__}")

