"""The run's typed configuration, checked in full before any model loads.

Hydra composes YAML from `conf/` and `recipes/`; `validate` turns the result into dataclasses, so a wrong type,
an unknown key or an impossible value stops the run with one message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from dharma_train.ablation import AblationConfig
from dharma_train.cli.suggestions import close_names, did_you_mean
from dharma_train.data.config import DataConfig
from dharma_train.errors import ConfigError
from dharma_train.evaluation.hook import EvalConfig
from dharma_train.gate import GateConfig
from dharma_train.models.config import ModelConfig
from dharma_train.reporting.tracking import TrackingConfig
from dharma_train.stages import STAGE_CONFIGS, trained_stages
from dharma_train.stages.dpo import mining_within
from dharma_train.stages.grpo import sampling_within, switched_off
from dharma_train.training.config import TrainerConfig
from dharma_train.typed_config import typed

SECTIONS = {"model": ModelConfig, "data": DataConfig, "evaluation": EvalConfig, "trainer": TrainerConfig,
            "tracking": TrackingConfig, "ablation": AblationConfig, "pipeline": GateConfig}
TOP_LEVEL = {"name", "output_dir", "stages", *SECTIONS}


@dataclass
class RunConfig:
    name: str
    output_dir: str
    model: ModelConfig
    data: DataConfig
    stages: dict[str, object]  # stage name -> its kind's config dataclass, in run order
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)  # bases: one run per base, then a comparison
    pipeline: GateConfig = field(default_factory=GateConfig)  # the stage gate: keep a stage only if it helped


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Typed, checked configuration; raises ConfigError naming the offending key."""
    values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    values.pop("hydra", None)
    unknown = sorted(set(values) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}'{did_you_mean(close_names(unknown[0], sorted(TOP_LEVEL)))}"
                          f"; known top-level keys: {', '.join(sorted(TOP_LEVEL))}")
    for key in ("name", "output_dir"):
        if not isinstance(values.get(key), str) or not values[key]:
            raise ConfigError(f"config key '{key}' must be a non-empty string")
    sections = {key: typed(key, schema, values.get(key) or {}) for key, schema in SECTIONS.items()}
    stages = values.get("stages") or {}
    removed = removed_stages(stages)
    stages = {name: stage for name, stage in stages.items() if name not in removed} if removed else stages
    if not isinstance(stages, dict) or not stages:
        raise ConfigError("config key 'stages' must map stage names to stage configs, and name at least one stage")
    typed_stages = {}
    for name, stage in stages.items():
        kind = (stage or {}).get("kind")
        if kind is None:
            raise ConfigError(_stage_without_kind(name, stages))
        if kind not in STAGE_CONFIGS:
            raise ConfigError(f"config key 'stages.{name}.kind' must be one of {sorted(STAGE_CONFIGS)}, got {kind!r}"
                              f"{did_you_mean(close_names(str(kind), sorted(STAGE_CONFIGS)))}")
        typed_stages[name] = sampling_within(mining_within(typed(f"stages.{name}", STAGE_CONFIGS[kind], stage),
                                                           sections["evaluation"].max_new_tokens),
                                             sections["evaluation"].max_new_tokens)
    off = [name for name, stage in typed_stages.items() if switched_off(stage)]  # checked, then left out
    typed_stages = {name: stage for name, stage in typed_stages.items() if name not in off}
    removed += off
    if not typed_stages:
        raise ConfigError("config key 'stages' must name at least one stage that is switched on (a stage with "
                          "enabled: false does not run)")
    from dharma_train.preflight import check_order

    check_order([(name, stage.kind) for name, stage in typed_stages.items()])  # before any page is generated
    try:
        sections["trainer"].performance.check_stages(
            {name: optimization.method for name, optimization in trained_stages(typed_stages).items()})
        sections["ablation"].check_stages(list(typed_stages), removed=removed)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return RunConfig(name=values["name"], output_dir=values["output_dir"], stages=typed_stages, **sections)


def removed_stages(stages) -> list[str]:
    """Stages set to null (`stages.quantize: null` in a recipe, `stages.quantize=null` on the command line): removed
    from the recipe they inherited, as `~stages.quantize` removes one on the command line."""
    return [name for name, stage in stages.items() if stage is None] if isinstance(stages, dict) else []


def _stage_without_kind(name: str, stages: dict) -> str:
    """A stage with no kind is usually a misspelled stage name: name the recipe's stages and the closest."""
    named = [other for other, stage in stages.items() if (stage or {}).get("kind")]
    meant = did_you_mean([f"stages.{other}" for other in close_names(name, named)])
    return (f"config key 'stages.{name}' is not a stage of this recipe (no kind; its stages: {', '.join(named)})"
            f"{meant}; a new stage needs stages.{name}.kind (one of {', '.join(sorted(STAGE_CONFIGS))})")
