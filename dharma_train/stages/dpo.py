"""Preference optimization through TRL's DPOTrainer: prefer the clean transcription over a degenerate one."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import PageSet
from dharma_train.data.pairs import PairSet
from dharma_train.errors import ConfigError, DataError
from dharma_train.stage import Stage, StageContext, StageResult, stage_config
from dharma_train.stages.mining import MiningConfig
from dharma_train.training.config import OptimizationConfig

log = logging.getLogger(__name__)


KIND = "dpo"  # the `kind` a stage config names in YAML
BUILT_PAIRS = ("mined", "synthetic")  # `pairs` values the stage makes itself; any other value is a pair source


def given_pairs(config) -> str | None:
    """The pair source a stage config was given (a DPO stage's `pairs` that it does not build itself), else None."""
    if not isinstance(config, DPOStageConfig) or config.pairs in BUILT_PAIRS:
        return None
    return config.pairs


def mining_within(stage_config, evaluation_tokens: int):
    """A stage config whose mining stops where evaluation does (`evaluation.max_new_tokens`), if that is sooner: the
    evaluation cannot see an answer past its bound, and a smoke run that lowers it should not mine to 512 tokens."""
    if not isinstance(stage_config, DPOStageConfig) or stage_config.mining.max_new_tokens <= evaluation_tokens:
        return stage_config
    return replace(stage_config, mining=replace(stage_config.mining, max_new_tokens=evaluation_tokens))


# TRL DPOTrainer's pairwise losses that need no extra inputs (the SFT term is `sft_loss_weight`)
LOSS_TYPES = ("sigmoid", "sigmoid_norm", "ipo", "hinge", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard",
              "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft")


@dataclass
class DPOStageConfig:
    """`conf/stage/dpo.yaml`. pairs: mined (the input model's own failures), synthetic (loop-shaped rejected answers
    built from the pages), or a pair source (a pairs.jsonl path, parquet, dataset...). A run loads a given source
    once, at start-up, into run_dir/data/stages/NAME/pairs and hands the stage that PairSet; `pairs` keeps the
    source the user gave."""

    kind: str = KIND
    task: str = "structured"
    data: str | None = None
    pairs: str = "mined"
    mining: MiningConfig = field(default_factory=MiningConfig)
    beta: float = 0.1
    loss_type: str = "sigmoid"  # TRL's preference loss: sigmoid (DPO) | sigmoid_norm | ipo | robust | ... (LOSS_TYPES)
    ld_alpha: float | None = None  # LD-DPO: weight of the tokens past the shorter answer (a loop's tail); None: 1
    sft_loss_weight: float = 0.0  # > 0 adds an SFT term on the chosen answers (RPO-style) so quality does not drift
    optimization: OptimizationConfig = field(default_factory=lambda: OptimizationConfig(learning_rate=5e-6))

    def __post_init__(self):
        if self.task not in ("structured", "plain"):
            raise ValueError(f"task must be 'structured' or 'plain', got {self.task!r}")
        if self.beta <= 0 or self.sft_loss_weight < 0:
            raise ValueError("beta must be > 0 and sft_loss_weight >= 0")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}")
        self.optimization.check("optimization")
        if self.ld_alpha is not None and not 0.0 <= self.ld_alpha <= 1.0:
            raise ValueError(f"ld_alpha must be in [0, 1] or null, got {self.ld_alpha}")


class DPOStage(Stage):
    """DPO against degeneration (TRL's DPOTrainer): pairs mined from the input model's own looping or broken answers
    (rejected) against the reference answer (chosen), or given/synthetic pairs; with too few pairs it passes its
    input on untrained (mining.on_too_few=skip) or stops (fail). Config keys as `stages.NAME` in YAML."""
    kind = KIND
    config_class = DPOStageConfig

    def __init__(self, name: str, config: DPOStageConfig | dict | None = None, pairs: PairSet | None = None):
        """`pairs`: the given pairs as a run loaded them (run_inputs.py); without it a given source is loaded when
        the stage runs."""
        self.name = name
        self.config = stage_config(name, config, DPOStageConfig)
        if pairs is not None and given_pairs(self.config) is None:
            raise ConfigError(f"stage {name}: a loaded pair set was handed to a stage whose pairs are "
                              f"{self.config.pairs!r} (it builds them itself)")
        self.pairs = pairs

    def check(self) -> None:
        """Find a given pair source before any model loads: a bad path fails at once (a run checks its rows too)."""
        if given_pairs(self.config):
            from dharma_train.data.pairs import check_pair_source

            check_pair_source(self.config.pairs)

    def input_files(self) -> dict[str, str]:
        """The given pairs, for the setting `pairs`: the loaded pair set (known by its pairs and image bytes, see
        manifest.py), or the source itself when the stage loads it."""
        if self.pairs is not None:
            return {"pairs": str(self.pairs.root)}
        return {"pairs": self.config.pairs} if given_pairs(self.config) else {}

    def own_pages(self) -> str | None:
        """The page source its config names (`data`), or None for the run's."""
        return self.config.data

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        from trl import DPOConfig, DPOTrainer

        from dharma_train.data.conversation import dpo_dataset
        from dharma_train.models.loading import load_model, load_processor
        from dharma_train.reporting.trainer_tracking import trainer_tracking
        from dharma_train.training.arguments import build_arguments
        from dharma_train.training.checkpoints import train_resumably
        from dharma_train.training.model_setup import freeze_vision_tower, lora_config
        from dharma_train.training.performance import quantized_base, speed_up
        from dharma_train.training.performance.apply import compile_repeated_layers
        from dharma_train.training.saving import save_from_trainer, write_stage_record

        cfg, opt = self.config, self.config.optimization
        processor = load_processor(model.processor_location, context.model.min_pixels, context.model.max_pixels)
        dtype = context.trainer.training_dtype(opt.method)
        network = load_model(model, dtype=dtype, settings=context.model,
                             quantize_4bit=quantized_base(opt.method, context.trainer.performance))
        pairs, mining = self._collect_pairs(network, processor, pages, output_dir, context)
        if cfg.pairs == "mined" and len(pairs) < cfg.mining.min_pairs:
            reason = (f"only {len(pairs)} preference pairs (need {cfg.mining.min_pairs}): the input model's answers "
                      f"rarely fail as {'/'.join(cfg.mining.reasons)} on these pages")
            if cfg.mining.on_too_few == "fail":
                raise DataError(f"{self.name}: {reason}; set mining.on_too_few=skip to pass the model on untrained")
            write_stage_record(output_dir, {"name": self.name, "kind": self.kind, "input": model.to_dict(),
                                            "output": model.to_dict(), "config": asdict(cfg), "skipped": reason})
            return StageResult(self.name, model, {"pairs": len(pairs), **mining}, skipped=reason)
        reference = None
        if opt.method == "full":
            if opt.freeze_vision:
                freeze_vision_tower(network)
            # An explicit frozen copy: TRL would otherwise reload the reference from config._name_or_path. It is
            # never updated, so it needs no fp32 master weights: in the inference dtype (bf16 on a GPU) it takes half
            # the memory and its forward casts no weights.
            reference = load_model(model, dtype=context.trainer.model_dtype(), settings=context.model)
        for trained_or_reference in filter(None, (network, reference)):
            speed_up(trained_or_reference, context.trainer.performance, context.trainer.resolved_device())
        if reference is not None:  # never trained, so nothing recomputes; the trained model compiles in training
            compile_repeated_layers(reference, context.trainer.performance, context.trainer.resolved_device(),
                                    None if context.trainer.hardware.sharded else "off")
        loss_types, loss_weights = [cfg.loss_type], [1.0]
        if cfg.sft_loss_weight > 0:
            loss_types, loss_weights = [cfg.loss_type, "sft"], [1.0, cfg.sft_loss_weight]
        tracking = trainer_tracking(context.tracking, str(output_dir), f"{context.run_name}/{self.name}")
        args = build_arguments(DPOConfig, opt, context.trainer, str(output_dir / "trainer"),
                               tracking.report_to, f"{context.run_name}/{self.name}",
                               beta=cfg.beta, loss_type=loss_types, loss_weights=loss_weights, ld_alpha=cfg.ld_alpha,
                               precompute_ref_log_probs=False)
        trainer = DPOTrainer(
            model=network, ref_model=reference, args=args, train_dataset=dpo_dataset(pairs, cfg.task),
            processing_class=processor, peft_config=lora_config(opt.lora) if opt.method == "lora" else None,
            callbacks=tracking.callbacks,
        )
        try:
            metrics = train_resumably(trainer, context.trainer, self.name)  # resumes, stops on SIGTERM, catches NaN
        finally:
            tracking.close()
        metrics.update({"pairs": len(pairs), **mining})
        artifact = save_from_trainer(trainer, processor, model, output_dir, opt.save,
                                     context.trainer.model_dtype())
        write_stage_record(output_dir, {"name": self.name, "kind": self.kind, "input": model.to_dict(),
                                        "output": artifact.to_dict(), "config": asdict(cfg),
                                        "pairs": len(pairs), "metrics": metrics})
        return StageResult(self.name, artifact, metrics)

    def _collect_pairs(self, network, processor, pages: PageSet, output_dir: Path,
                       context: StageContext) -> tuple[list, dict]:
        """The configured pairs, saved with a summary; mining uses the model about to be trained, on its device.

        Given pairs a run loaded (self.pairs) are read as they are, where they are: checked and prepared once, at
        run start, with the run's `data.strict` and `data.max_pixels`; a resumed attempt reads the same set (its
        inputs, and so the set's content, are unchanged). A pair source given outside a run is loaded here.
        """
        from dharma_train.data.pairs import load_given_pairs, loop_pairs, save_pairs
        from dharma_train.distributed import is_main
        from dharma_train.files import read_json_or_none, write_json_atomically
        from dharma_train.run_paths import run_relative
        from dharma_train.stages.mining import mine_pairs

        cfg, mining, loaded = self.config, {}, {}
        if self.pairs is not None:
            pairs, report = self.pairs.pairs(), self.pairs.report()
            if is_main():  # no copy of the pairs here: data/stages/NAME/pairs is what the stage trained on
                write_json_atomically(output_dir / "pairs_summary.json", run_relative(
                    {"source": report["source"], "folder": str(self.pairs.root), "pairs": len(pairs),
                     "load_report": report}, output_dir.parent))
            return pairs, mining
        collected = read_json_or_none(output_dir / "pairs_summary.json")  # written after pairs.jsonl
        if context.trainer.resume == "auto" and isinstance(collected, dict):
            pairs = collected_pairs(output_dir, self.name)  # an interrupted attempt's: the resumed run trains on them
            if pairs is not None:
                log.info("%s: reusing the %d pairs collected before the interruption", self.name, len(pairs))
                return pairs, {"mining": collected["mining"]} if "mining" in collected else {}
        if cfg.pairs == "mined":
            network.to(context.trainer.resolved_device())
            pairs, stats = mine_pairs(network, processor, pages, cfg.task, cfg.mining, seed=context.trainer.seed)
            network.train()
            mining = {"mining": stats}
        elif cfg.pairs == "synthetic":
            pairs = loop_pairs(pages, cfg.task, seed=context.trainer.seed)
        else:
            pairs, loaded = load_given_pairs(cfg.pairs, output_dir / "pair_images")
        if is_main():
            save_pairs(pairs, output_dir, within=output_dir.parent)  # the run's page images: run-relative
            write_json_atomically(output_dir / "pairs_summary.json",
                                  {"source": cfg.pairs, "pairs": len(pairs), **mining, **loaded})
        return pairs, mining


def collected_pairs(output_dir: Path, stage: str) -> list | None:
    """The pairs an interrupted attempt collected into its folder, or None when they cannot be used (a damaged
    pairs.jsonl, or an image gone with a run moved before pairs were stored run-relative): they are derived from the
    input model and the pages, so they are collected again (the same pairs, for the same seed), with one warning."""
    from dharma_train.data.pairs import load_pairs

    try:
        return load_pairs(output_dir)
    except DataError as error:
        log.warning("%s: the pairs collected before the interruption cannot be used (%s); collecting them again",
                    stage, error)
        return None
