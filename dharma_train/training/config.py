"""The `trainer` group's typed config (hardware, precision, checkpoints) and what a trained stage sets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from dharma_train.training.hardware import HardwareConfig
from dharma_train.training.performance.config import PerformanceConfig

# Language-model projections only: the vision tower's MLP reuses the names gate/up/down_proj.
LANGUAGE_LINEARS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
GPU_LOADER_WORKERS = 4  # per training process, fewer where the machine has fewer cores per GPU

@dataclass
class TrainerConfig:
    """Where and how training runs; shared by every stage of a recipe (config group `trainer`)."""

    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp32) | bf16 | fp32
    gradient_checkpointing: bool | None = None  # None: performance.recompute decides; true/false: every layer/none
    dataloader_workers: int | None = None  # None: GPU_LOADER_WORKERS on a CUDA GPU, 0 on a CPU
    seed: int = 0
    logging_steps: int = 10
    hardware: HardwareConfig = field(default_factory=HardwareConfig)  # group `hardware`: single | ddp | fsdp2 | zero3
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    # Long jobs (docs/running-long-jobs.md)
    checkpoint_every: int = 100  # optimizer steps between trainer checkpoints, the points a stage resumes from; 0: none
    keep_checkpoints: int = 2  # newest checkpoints kept while a stage trains; all are removed once it finishes
    resume: str = "auto"  # auto: reuse finished stages, resume an interrupted one from its checkpoint | never
    on_nonfinite: str = "stop"  # a NaN/inf gradient: stop the stage (nothing saved) | skip: drop that batch's update
    memory_budget_gb: float | None = None  # memory a stage may use; None: the GPU's own (unchecked on a CPU)
    lock_wait_seconds: float = 0  # another run holds output_dir: stop at once (0), or wait this long for it to end

    def __post_init__(self):
        _choice("trainer.device", self.device, ("auto", "cpu", "cuda"))
        _choice("trainer.precision", self.precision, ("auto", "bf16", "fp32"))
        _choice("trainer.resume", self.resume, ("auto", "never"))
        _choice("trainer.on_nonfinite", self.on_nonfinite, ("stop", "skip"))
        if self.precision == "bf16" and self.device == "cpu":
            raise ValueError("trainer.precision=bf16 with trainer.device=cpu is not supported; use fp32")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ValueError("trainer.checkpoint_every must be >= 0 (0: no checkpoints) and keep_checkpoints >= 1")
        if self.dataloader_workers is not None and self.dataloader_workers < 0:
            raise ValueError("trainer.dataloader_workers must be >= 0, or null for the device's default")
        if self.lock_wait_seconds < 0:
            raise ValueError("trainer.lock_wait_seconds must be >= 0 (0: stop at once; .inf: wait for ever)")
        if self.memory_budget_gb is not None and self.memory_budget_gb <= 0:
            raise ValueError("trainer.memory_budget_gb must be > 0, or null to use the GPU's memory")

    def check_hardware(self) -> None:
        """Checks against this machine, made at run start (not at validation, so recipes validate anywhere)."""
        from dharma_train.errors import ConfigError

        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("trainer.device=cuda but no CUDA GPU is visible; use trainer=auto or trainer=cpu")
        if self.resolved_precision() == "bf16" and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            raise ConfigError("trainer.precision=bf16 needs a GPU with bf16 support; use trainer.precision=fp32")

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_workers(self) -> int:
        """Image preprocessing in the training process starves a GPU (2.2x fewer steps/s on an H100 with none:
        docs/experiments/ocr-rung.md); on a CPU, workers only compete with training for the same cores."""
        if self.dataloader_workers is not None:
            return self.dataloader_workers
        if self.resolved_device() != "cuda":
            return 0
        return min(GPU_LOADER_WORKERS, max((os.cpu_count() or 1) // max(torch.cuda.device_count(), 1) - 1, 0))

    def resolved_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        on_gpu = self.resolved_device() == "cuda"
        return "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "fp32"

    def model_dtype(self) -> str:
        """Weights for inference and for LoRA's frozen base."""
        return "bfloat16" if self.resolved_precision() == "bf16" else "float32"

    def training_dtype(self, method: str) -> str:
        """Full fine-tuning keeps fp32 master weights, as its parameters under bf16 autocast or, with
        master_weights=optimizer, in the optimizer (the parameters then bf16): pure-bf16 weights drop small updates."""
        return "float32" if method == "full" and not self.masters_in_optimizer() else self.model_dtype()

    def masters_in_optimizer(self) -> bool:
        """performance.master_weights=optimizer where it applies: bf16 training in one process or DDP (FSDP2 and
        ZeRO-3 keep fp32 shards of their own; an fp32 run has nothing to keep apart)."""
        return (self.performance.master_weights == "optimizer" and self.resolved_precision() == "bf16"
                and not self.hardware.sharded)


def planned_recompute(settings: TrainerConfig) -> str:
    """The policy before any probe: explicit settings win; auto stays "auto" only where a probe can measure."""
    asked = settings.performance.recompute
    if settings.gradient_checkpointing is not None:  # the older switch, set explicitly
        return ("all" if asked in ("auto", "off") else asked) if settings.gradient_checkpointing else "off"
    if asked != "auto":
        return asked
    if settings.resolved_device() != "cuda":
        return "off"  # a CPU's memory is not checked, and recomputing only slows the tests and the tiny ladder
    return "all" if settings.hardware.sharded else "auto"


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0  # peft's default; 0.05 cost 9 % of LoRA's step, 12-17 GiB at 3B (docs/performance.md)
    target_modules: str = LANGUAGE_LINEARS  # a regex over module names, as peft accepts


@dataclass
class OptimizationConfig:
    """What every trained stage sets: method, schedule, batch."""

    method: str = "lora"  # lora | full
    lora: LoraSettings = field(default_factory=LoraSettings)
    freeze_vision: bool = True
    learning_rate: float = 2e-4
    max_steps: int = -1  # -1: train for `epochs`
    epochs: float = 1.0
    batch_size: int = 4
    gradient_accumulation: int = 1
    warmup: float = 0.03  # below 1: a fraction of the steps; otherwise a step count
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    save: str = "merged"  # merged: full weights (plus the adapter); adapter: the adapter alone

    def check(self, prefix: str) -> None:
        _choice(f"{prefix}.method", self.method, ("lora", "full"))
        _choice(f"{prefix}.save", self.save, ("merged", "adapter"))
        if self.method == "full" and self.save == "adapter":
            raise ValueError(f"{prefix}.save=adapter needs {prefix}.method=lora")
        if self.learning_rate <= 0 or self.batch_size < 1 or self.gradient_accumulation < 1:
            raise ValueError(f"{prefix}: learning_rate must be > 0, batch_size and gradient_accumulation >= 1")
        if self.max_steps == 0 or self.max_steps < -1 or (self.max_steps == -1 and self.epochs <= 0):
            raise ValueError(f"{prefix}: set max_steps > 0, or max_steps=-1 and epochs > 0 "
                             f"(got max_steps={self.max_steps}, epochs={self.epochs})")
        if self.warmup < 0 or self.weight_decay < 0:
            raise ValueError(f"{prefix}.warmup and weight_decay must be >= 0, got {self.warmup} and "
                             f"{self.weight_decay}")
        if self.lora.r < 1 or self.lora.alpha <= 0 or not 0 <= self.lora.dropout < 1:
            raise ValueError(f"{prefix}.lora: r >= 1, alpha > 0 and 0 <= dropout < 1, got r={self.lora.r}, "
                             f"alpha={self.lora.alpha}, dropout={self.lora.dropout}")


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")
