"""TrainingArguments for SFTConfig, DPOConfig and GRPOConfig, built in this one file from the trainer and stage configs."""

from __future__ import annotations

from functools import cache

from dharma_train.training.config import OptimizationConfig, TrainerConfig
from dharma_train.training.performance.config import PerformanceConfig


@cache
def _checkpointing_argument() -> str:
    """transformers 5.23 renamed `gradient_checkpointing`; the GPU image's 5.17 knows only the old name."""
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {f.name for f in fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def trainer_arguments(optimization: OptimizationConfig, hardware: TrainerConfig, output_dir: str,
                      report_to: list[str], run_name: str) -> dict:
    """Keyword arguments both SFTConfig and DPOConfig take, derived from our configs.

    `batch_size` is the global batch: each of the run's processes takes an equal share of it. Checkpoints (model,
    optimizer, scheduler, RNG, step) every `checkpoint_every` steps are what a stage resumes from.
    """
    from dharma_train.distributed import world_size
    from dharma_train.training.config import planned_recompute

    precision, workers = hardware.resolved_precision(), hardware.resolved_workers()
    policy = planned_recompute(hardware)
    recompute = policy not in ("off", "auto")
    # One process: train_resumably sets the policy on the layers (performance/recompute.py); the Trainer's own
    # switch stays off so that train() does not reset it. FSDP2 and ZeRO-3 take it as TrainingArguments.
    trainer_policy = policy if hardware.hardware.sharded else "off"
    return {
        "output_dir": output_dir,
        "run_name": run_name,
        "per_device_train_batch_size": max(1, optimization.batch_size // world_size()),
        "gradient_accumulation_steps": optimization.gradient_accumulation,
        "learning_rate": optimization.learning_rate,
        "max_steps": optimization.max_steps,
        "num_train_epochs": optimization.epochs,
        "warmup_steps": optimization.warmup,
        "weight_decay": optimization.weight_decay,
        "lr_scheduler_type": optimization.lr_scheduler,
        "logging_steps": hardware.logging_steps,
        "save_strategy": "steps" if hardware.checkpoint_every else "no",
        "save_steps": hardware.checkpoint_every or 500,
        "save_total_limit": hardware.keep_checkpoints,
        "report_to": report_to,
        "bf16": precision == "bf16",
        "use_cpu": hardware.resolved_device() == "cpu",
        **(checkpointing_arguments(trainer_policy) if hardware.hardware.trainer_checkpointing(recompute)
           else checkpointing_arguments("off")),
        **hardware.hardware.trainer_arguments(activation_checkpointing=recompute),
        "dataloader_num_workers": workers,
        "seed": hardware.seed,
        "data_seed": hardware.seed,
        "max_length": None,  # rows over model.max_length are skipped at load (data/lengths.py); never cut an image
        **performance_arguments(hardware.performance, hardware.resolved_device(), workers),
    }


def build_arguments(config_class, optimization: OptimizationConfig, hardware: TrainerConfig, output_dir: str,
                    report_to: list[str], run_name: str, **stage_arguments):
    """SFTConfig, DPOConfig or GRPOConfig: `trainer_arguments` plus the stage's own, then what no keyword reaches
    (transformers passes no mixed-precision policy through `fsdp_config`): FSDP2's policy, read by accelerate's
    plugin."""
    arguments = trainer_arguments(optimization, hardware, output_dir, report_to, run_name)
    if not _has_field(config_class, "max_length"):  # GRPOConfig bounds its answers with max_completion_length
        del arguments["max_length"]
    args = config_class(**{**arguments, **stage_arguments})  # a stage's own value wins (GRPO's logging_steps)
    policy = hardware.hardware.fsdp2_precision(hardware.resolved_precision())
    if policy is not None:
        args.fsdp_plugin_args["mixed_precision_policy"] = policy
    return args


def _has_field(config_class, name: str) -> bool:
    from dataclasses import fields

    return any(f.name == name for f in fields(config_class))


def checkpointing_arguments(policy: str) -> dict:
    """The Trainer's activation-checkpointing entries for a recompute policy, used under FSDP2 and ZeRO-3 (one
    process sets the layers itself); keep_N becomes every layer there, auto off until probed."""
    from dharma_train.training.performance.recompute import every_n_layers

    name = _checkpointing_argument()
    every = None if policy == "auto" else every_n_layers(policy)
    return {name: every is not None, f"{name}_kwargs": {"every_n_layers": every} if every and every > 1 else None}


def performance_arguments(config: PerformanceConfig, device: str, dataloader_workers: int) -> dict:
    """TrainingArguments entries for the optimizer and the data loader."""
    on_gpu = device == "cuda"
    arguments = {}
    if not config.fused_optimizer:
        arguments["optim"] = "adamw_torch"
    elif on_gpu:
        arguments["optim"] = "adamw_torch_fused"  # elsewhere: transformers' default (fused too, from torch 2.8)
    if dataloader_workers > 0:
        arguments.update(dataloader_persistent_workers=True, dataloader_prefetch_factor=config.prefetch_batches,
                         dataloader_pin_memory=on_gpu)
    return arguments
