"""Reinforcement learning with verifiable rewards through TRL's GRPOTrainer: the rewards are the evaluation's own
measurements of each sampled answer (grpo_rewards.py), so the stage trains toward what the gate keeps.

Per page, `num_generations` answers are sampled from the model being trained: through the project's continuous
engine (grpo_rollout.py: each page's image encoded once for its answers, one slot per answer), or through TRL's own
`model.generate` (prompts left-padded, Qwen2.5-VL's image-token types padded with them); each answer is scored by
every reward term; an answer's advantage is its weighted reward against its group's mean. A group whose answers
all score the same has no advantage to learn from: TRL gives it zero (it is skipped) and the stage counts such
groups, and the answers that ran into the token bound, from TRL's per-step logs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import PageSet
from dharma_train.stage import Stage, StageContext, StageResult, stage_config
from dharma_train.stages.grpo_rewards import TERMS, RewardWeights
from dharma_train.training.config import OptimizationConfig

log = logging.getLogger(__name__)

KIND = "grpo"  # the `kind` a stage config names in YAML
LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo")  # TRL's GRPO losses that need no extra settings
SCALES = ("group", "batch", "none")  # TRL's scale_rewards: divide advantages by the group's std, the batch's, or not
ENGINES = ("auto", "continuous", "generate")  # who samples: the project's continuous engine or TRL's model.generate


@dataclass
class GRPOStageConfig:
    """`conf/stage/grpo.yaml`. `optimization.batch_size` counts sampled answers (pages x num_generations) per
    micro-batch; batch_size x gradient_accumulation (the answers of one optimizer step) must hold whole groups."""

    kind: str = KIND
    enabled: bool = True  # false: a recipe's optional rung, removed when the config is validated
    task: str = "structured"
    data: str | None = None
    num_generations: int = 4  # answers sampled per page: the group its rewards are compared within
    max_new_tokens: int = 512  # the sampling bound (a run uses evaluation.max_new_tokens if smaller)
    temperature: float = 1.0
    top_p: float = 1.0
    engine: str = "auto"  # auto: the continuous engine on CUDA (unsharded), TRL's model.generate elsewhere
    beta: float = 0.0  # KL to the input model; 0: no reference model at all; > 0 needs LoRA (adapters off = reference)
    epsilon: float = 0.2  # the clipping range of the policy ratio
    loss_type: str = "dapo"  # TRL's GRPO loss: dapo | grpo | dr_grpo | bnpo
    scale_rewards: str = "group"  # group | batch | none
    rewards: RewardWeights = field(default_factory=RewardWeights)
    optimization: OptimizationConfig = field(default_factory=lambda: OptimizationConfig(learning_rate=1e-6,
                                                                                         batch_size=8))

    def __post_init__(self):
        if self.task not in ("structured", "plain"):
            raise ValueError(f"task must be 'structured' or 'plain', got {self.task!r}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (a group needs two answers to compare), "
                             f"got {self.num_generations}")
        step_answers = self.optimization.batch_size * self.optimization.gradient_accumulation
        if step_answers % self.num_generations:
            raise ValueError(f"optimization.batch_size x gradient_accumulation ({step_answers}) must be a multiple "
                             f"of num_generations ({self.num_generations}): a step trains on whole groups")
        if self.max_new_tokens < 1 or self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"max_new_tokens >= 1, temperature > 0 and 0 < top_p <= 1, got {self.max_new_tokens}, "
                             f"{self.temperature}, {self.top_p}")
        if self.beta < 0 or self.epsilon <= 0:
            raise ValueError(f"beta must be >= 0 and epsilon > 0, got {self.beta} and {self.epsilon}")
        if self.beta > 0 and self.optimization.method != "lora":
            raise ValueError(f"beta={self.beta} needs optimization.method=lora (the reference is the model with its "
                             f"adapters off); full fine-tuning runs with beta=0, no reference model")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {self.engine!r}")
        if self.scale_rewards not in SCALES:
            raise ValueError(f"scale_rewards must be one of {list(SCALES)}, got {self.scale_rewards!r}")
        self.optimization.check("optimization")


def sampling_engine(config: GRPOStageConfig, trainer) -> str:
    """Who samples the answers: `auto` is the continuous engine on CUDA when every process holds the whole model,
    else TRL's `model.generate`. The engine calls the model's parts one by one, which sharded parameters (fsdp2,
    zero3) are not verified with, so asking for it there is refused before any model loads."""
    if config.engine == "continuous" and trainer.hardware.sharded:
        from dharma_train.errors import ConfigError

        raise ConfigError(f"engine=continuous is not verified with sharded parameters "
                          f"(trainer.hardware.strategy={trainer.hardware.strategy}): use engine=auto or generate")
    if config.engine == "auto":
        whole = trainer.resolved_device() == "cuda" and not trainer.hardware.sharded
        return "continuous" if whole else "generate"
    return config.engine


def switched_off(config) -> bool:
    """A GRPO rung a recipe carries but has not turned on (`enabled: false`)."""
    return isinstance(config, GRPOStageConfig) and not config.enabled


def sampling_within(stage_config, evaluation_tokens: int):
    """A GRPO config that samples no further than evaluation reads (`evaluation.max_new_tokens`), if that is sooner:
    an answer past the evaluation's bound is one the gate never sees, and a smoke run lowers both."""
    if not isinstance(stage_config, GRPOStageConfig) or stage_config.max_new_tokens <= evaluation_tokens:
        return stage_config
    return replace(stage_config, max_new_tokens=evaluation_tokens)


class GRPOStage(Stage):
    """GRPO on the evaluation's rewards (TRL's GRPOTrainer), LoRA or full, resumable from its checkpoints like every
    trained stage. `GRPOStage("grpo", {"num_generations": 4, "optimization": {"max_steps": 50}})` takes the keys of
    `stages.NAME` in YAML."""
    kind = KIND
    config_class = GRPOStageConfig

    def __init__(self, name: str, config: GRPOStageConfig | dict | None = None):
        self.name = name
        self.config = stage_config(name, config, GRPOStageConfig)

    def own_pages(self) -> str | None:
        """Its own pages (`data`), or None for the run's."""
        return self.config.data

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        from trl import GRPOConfig, GRPOTrainer

        from dharma_train.data.conversation import grpo_dataset
        from dharma_train.models.loading import load_model, load_processor
        from dharma_train.reporting.trainer_tracking import trainer_tracking
        from dharma_train.stages.grpo_rewards import RewardTerms
        from dharma_train.stages.grpo_rollout import EngineRollout, require_left_padding
        from dharma_train.training.arguments import build_arguments
        from dharma_train.training.checkpoints import train_resumably
        from dharma_train.training.model_setup import freeze_vision_tower, lora_config
        from dharma_train.training.performance import quantized_base
        from dharma_train.training.saving import save_from_trainer, write_stage_record

        cfg, opt = self.config, self.config.optimization
        engine = sampling_engine(cfg, context.trainer)
        processor = load_processor(model.processor_location, context.model.min_pixels, context.model.max_pixels)
        require_left_padding(processor)
        network = load_model(model, dtype=context.trainer.training_dtype(opt.method), settings=context.model,
                             quantize_4bit=quantized_base(opt.method, context.trainer.performance))
        if opt.method == "full" and opt.freeze_vision:
            log.info("%s: froze %d vision-tower parameters", self.name, freeze_vision_tower(network))
        rewards = RewardTerms(pages.pages, cfg.task, cfg.rewards, cfg.max_new_tokens, end_tokens(network, processor))
        tracking = trainer_tracking(context.tracking, str(output_dir), f"{context.run_name}/{self.name}")
        args = build_arguments(GRPOConfig, opt, context.trainer, str(output_dir / "trainer"), tracking.report_to,
                               f"{context.run_name}/{self.name}", num_generations=cfg.num_generations,
                               max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature,
                               top_p=cfg.top_p, beta=cfg.beta, epsilon=cfg.epsilon, loss_type=cfg.loss_type,
                               scale_rewards=cfg.scale_rewards, reward_weights=cfg.rewards.weights(),
                               logging_steps=reward_logging_steps(context.trainer.logging_steps, opt.max_steps))
        rollout = EngineRollout(pages.pages, processor) if engine == "continuous" else None
        trainer = GRPOTrainer(
            model=network, reward_funcs=rewards.functions(), args=args, train_dataset=grpo_dataset(pages, cfg.task),
            processing_class=processor, peft_config=lora_config(opt.lora) if opt.method == "lora" else None,
            callbacks=tracking.callbacks, rollout_func=rollout,
        )
        # No speed_up: TRL takes log-probabilities through its own fused LM head over left-padded batches, which
        # padding-free attention and Liger's fused loss are not measured with.
        try:
            metrics = train_resumably(trainer, context.trainer, self.name, eager_because=(
                "GRPO stages: compiled layers between TRL's sampling and its log-probability passes are not yet "
                "measured on a GPU"))
        finally:
            tracking.close()
        metrics["grpo"] = reward_record(trainer.state.log_history, opt.batch_size * opt.gradient_accumulation,
                                        cfg.num_generations)
        metrics["grpo"]["engine"] = engine
        log.info("%s: %s", self.name, describe(metrics["grpo"]))
        if rollout is not None:
            log.info("%s: the continuous engine sampled %d answers, encoding %d page images", self.name,
                     rollout.answers, rollout.images_encoded)
        artifact = save_from_trainer(trainer, processor, model, output_dir, opt.save, context.trainer.model_dtype())
        write_stage_record(output_dir, {"name": self.name, "kind": self.kind, "input": model.to_dict(),
                                        "output": artifact.to_dict(), "config": asdict(cfg),
                                        "train_pages": str(pages.root), "metrics": metrics})
        return StageResult(self.name, artifact, metrics)


def reward_logging_steps(logging_steps: int, max_steps: int) -> int:
    """Log often enough for the reward curves to be curves: at least 20 points over a short run (a CPU recipe's
    logging_steps of 20 left a 20-step GRPO stage one point), never less often than trainer.logging_steps."""
    if max_steps <= 0:
        return logging_steps
    return max(1, min(logging_steps, max_steps // 20))


def end_tokens(model, processor) -> set[int]:
    """Every token that ends an answer: the tokenizer's end token and the model's (TRL stops on all of them)."""
    declared = model.generation_config.eos_token_id
    declared = [] if declared is None else [declared] if isinstance(declared, int) else list(declared)
    return {processor.tokenizer.eos_token_id, *declared}


def reward_record(log_history: list[dict], step_answers: int, group_size: int) -> dict:
    """Each reward term's mean at every logged step, and the totals over training: groups sampled, groups skipped
    for zero reward variance, answers that ran into the token bound. TRL logs shares averaged over each logging
    window, so a share counts once per step of its window; the history survives a resume (trainer_state.json)."""
    logged = [entry for entry in log_history if "reward" in entry and "step" in entry]
    curves = {"step": [entry["step"] for entry in logged], "reward": [entry["reward"] for entry in logged]}
    curves.update({term: [entry.get(f"rewards/{term}/mean") for entry in logged] for term in TERMS})
    steps = [entry["step"] - before for entry, before in zip(logged, [0] + curves["step"][:-1])]
    groups = step_answers // group_size
    return {
        "answers": step_answers * sum(steps), "groups": groups * sum(steps),
        "zero_variance_groups": round(sum(entry["frac_reward_zero_std"] * groups * n for entry, n in zip(logged, steps))),
        "hit_token_limit": round(sum(entry["completions/clipped_ratio"] * step_answers * n
                                     for entry, n in zip(logged, steps))),
        "curves": curves,
    }


def describe(record: dict) -> str:
    """One line for the log: what training sampled, skipped and how the reward moved."""
    curve = record["curves"]["reward"]
    moved = f"reward {curve[0]:.3f} -> {curve[-1]:.3f}" if curve else "no step logged"
    return (f"{record['groups']} groups of answers sampled, {record['zero_variance_groups']} skipped (every answer "
            f"scored the same), {record['hit_token_limit']} of {record['answers']} answers ran into the token bound; "
            f"{moved}")
