"""Supervised fine-tuning through TRL's SFTTrainer: page image + instruction -> the answer (JSON or plain text)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import PageSet
from dharma_train.data.prompts import TASKS
from dharma_train.stage import Stage, StageContext, StageResult, stage_config
from dharma_train.training.config import OptimizationConfig

log = logging.getLogger(__name__)


KIND = "sft"  # the `kind` a stage config names in YAML


@dataclass
class SFTStageConfig:
    """`conf/stage/sft.yaml`. task=general (or plain) is the general-OCR rung; task=structured the JSON specialist."""

    kind: str = KIND
    task: str = "structured"  # structured | plain | general (Markdown)
    data: str | None = None  # a page folder for this stage alone, or a generated set (`general`); None: the run's
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        self.optimization.check("optimization")


class SFTStage(Stage):
    """Supervised fine-tuning (TRL's SFTTrainer), full or LoRA: the general-OCR rung (task=general/plain) or the
    structured-JSON specialist (task=structured). `SFTStage("structured", {"optimization": {"max_steps": 100}})`
    takes the same keys as `stages.NAME` in YAML; its output folder holds the merged model and its processor."""
    kind = KIND
    config_class = SFTStageConfig

    def __init__(self, name: str, config: SFTStageConfig | dict | None = None):
        self.name = name
        self.config = stage_config(name, config, SFTStageConfig)

    def own_pages(self) -> str | None:
        """Its own pages (`data`), or None for the run's."""
        return self.config.data

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        from trl import SFTConfig, SFTTrainer

        from dharma_train.data.conversation import sft_dataset
        from dharma_train.models.loading import load_model, load_processor
        from dharma_train.reporting.trainer_tracking import trainer_tracking
        from dharma_train.training.arguments import build_arguments
        from dharma_train.training.checkpoints import train_resumably
        from dharma_train.training.model_setup import freeze_vision_tower, lora_config
        from dharma_train.training.performance import quantized_base, speed_up
        from dharma_train.training.saving import save_from_trainer, write_stage_record

        opt = self.config.optimization
        processor = load_processor(model.processor_location, context.model.min_pixels, context.model.max_pixels)
        network = load_model(model, dtype=context.trainer.training_dtype(opt.method), settings=context.model,
                             quantize_4bit=quantized_base(opt.method, context.trainer.performance))
        if opt.method == "full" and opt.freeze_vision:
            log.info("%s: froze %d vision-tower parameters", self.name, freeze_vision_tower(network))
        speed_up(network, context.trainer.performance, context.trainer.resolved_device())
        tracking = trainer_tracking(context.tracking, str(output_dir), f"{context.run_name}/{self.name}")
        args = build_arguments(SFTConfig, opt, context.trainer, str(output_dir / "trainer"),
                               tracking.report_to, f"{context.run_name}/{self.name}")
        trainer = SFTTrainer(
            model=network, args=args, train_dataset=sft_dataset(pages, self.config.task),
            processing_class=processor, peft_config=lora_config(opt.lora) if opt.method == "lora" else None,
            callbacks=tracking.callbacks,
        )
        try:
            metrics = train_resumably(trainer, context.trainer, self.name)  # resumes, stops on SIGTERM, catches NaN
        finally:
            tracking.close()
        artifact = save_from_trainer(trainer, processor, model, output_dir, opt.save,
                                     context.trainer.model_dtype())
        write_stage_record(output_dir, {"name": self.name, "kind": self.kind, "input": model.to_dict(),
                                        "output": artifact.to_dict(), "config": asdict(self.config),
                                        "train_pages": str(pages.root), "metrics": metrics})
        return StageResult(self.name, artifact, metrics)
