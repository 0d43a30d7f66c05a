"""How training spreads over several GPUs or nodes (config group `hardware`, stored at `trainer.hardware`).

single: one process. ddp: data parallel, each process holds the whole model (LoRA on several GPUs).
fsdp2: PyTorch FSDP2 (`fully_shard`) through accelerate, parameters, gradients and optimizer state sharded
(full fine-tuning of models that do not fit one GPU). zero3: DeepSpeed ZeRO-3, the alternative sharding engine.
Settings become TRL/transformers TrainingArguments (`fsdp`/`fsdp_config`, `deepspeed`); launching is the
launcher's job (`torchrun`, `accelerate launch`, see docs/distributed.md).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

STRATEGIES = ("single", "ddp", "fsdp2", "zero3")
SHARDED = ("fsdp2", "zero3")


@dataclass
class FSDPSettings:
    """FSDP2 options passed to accelerate's FSDP plugin."""

    reshard_after_forward: bool = True  # false: keep gathered parameters until backward (faster, more memory)
    cpu_offload: bool = False  # parameters and gradients live on the CPU between uses


@dataclass
class ZeroSettings:
    """DeepSpeed ZeRO-3 options; `config` replaces the generated DeepSpeed JSON entirely."""

    offload_optimizer: bool = False
    offload_params: bool = False
    config: str | None = None  # a DeepSpeed JSON file of your own


@dataclass
class HardwareConfig:
    strategy: str = "single"  # single | ddp | fsdp2 | zero3
    fsdp: FSDPSettings = field(default_factory=FSDPSettings)
    zero3: ZeroSettings = field(default_factory=ZeroSettings)

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"hardware.strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")

    @property
    def sharded(self) -> bool:
        """Whether no single process holds the whole trained model (saving must gather it)."""
        return self.strategy in SHARDED

    def check(self, device: str, world_size: int, launched: bool, batch_sizes: dict[str, int]) -> None:
        """Checks against how this run was launched, made at run start before any model loads."""
        from dharma_train.errors import ConfigError

        key = "trainer.hardware.strategy"
        if self.strategy == "single" and world_size > 1:
            raise ConfigError(f"{key}=single but the run was launched with {world_size} processes; "
                              "choose hardware=ddp (LoRA), hardware=fsdp2 or hardware=zero3")
        if self.strategy != "single" and not launched:
            raise ConfigError(f"{key}={self.strategy} needs a multi-process launch: "
                              "`accelerate launch -m dharma_train ...` or `torchrun --nproc_per_node N -m dharma_train ...`"
                              " (docs/distributed.md)")
        if self.strategy == "fsdp2" and device != "cuda":
            # accelerate applies FSDP on accelerators only: on the CPU it would silently run plain DDP.
            raise ConfigError(f"{key}=fsdp2 runs on CUDA GPUs only (accelerate has no CPU FSDP); "
                              "on a CPU use hardware=ddp")
        if self.strategy == "zero3":
            if importlib.util.find_spec("deepspeed") is None:
                raise ConfigError(f"{key}=zero3 needs DeepSpeed: `pip install deepspeed`, or use hardware=fsdp2")
            if device != "cuda":
                raise ConfigError(f"{key}=zero3 runs on CUDA GPUs only; on a CPU use hardware=ddp or hardware=fsdp2")
        if self.zero3.config is not None and self.strategy == "zero3":
            from pathlib import Path

            if not Path(self.zero3.config).is_file():
                raise ConfigError(f"trainer.hardware.zero3.config: DeepSpeed config {self.zero3.config} does not exist")
        for prefix, batch_size in batch_sizes.items():
            if batch_size % world_size:
                raise ConfigError(f"{prefix}.optimization.batch_size={batch_size} is the global batch and must "
                                  f"divide evenly over the {world_size} processes")
        if world_size == 1 and self.strategy != "single":
            log.warning("%s=%s with one process: nothing is split; use it to measure the engine's overhead",
                        key, self.strategy)

    def trainer_checkpointing(self, requested: bool) -> bool:
        """The Trainer's own activation checkpointing: off under FSDP2, which checkpoints itself (see below)."""
        return requested and self.strategy != "fsdp2"

    def fsdp2_precision(self, precision: str):
        """FSDP2's mixed-precision policy, or None where accelerate's own applies. accelerate's bf16 default casts
        every sharded module's output to bf16, so TRL's per-token log-probs came back in bf16 and a DPO stage's
        per-sequence sums lost whole nats (docs/distributed.md); it also reduces gradients in bf16. Here: compute in
        bf16, leave outputs as computed (fp32 log-probs), reduce gradients in fp32."""
        if self.strategy != "fsdp2" or precision != "bf16":
            return None
        import torch
        from torch.distributed.fsdp import MixedPrecisionPolicy

        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)

    def trainer_arguments(self, activation_checkpointing: bool) -> dict:
        """TrainingArguments for the engine. Under FSDP2, activation checkpointing is FSDP's own: the Trainer's
        would add a redundant all-gather in backward (transformers issue 30404)."""
        if self.strategy == "fsdp2":
            return {"fsdp": True, "fsdp_config": {
                "version": 2,
                "reshard_after_forward": self.fsdp.reshard_after_forward,
                "cpu_offload": self.fsdp.cpu_offload,
                "activation_checkpointing": activation_checkpointing,
                "state_dict_type": "FULL_STATE_DICT",  # the final model is gathered to rank 0 as plain weights
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # per decoder layer / vision block (_no_split_modules)
            }}
        if self.strategy == "zero3":
            return {"deepspeed": self.zero3.config or zero3_config(self.zero3)}
        if self.strategy == "ddp":
            return {"ddp_find_unused_parameters": False}  # every trained parameter is used in every step
        return {}


def zero3_config(settings: ZeroSettings) -> dict:
    """A DeepSpeed ZeRO-3 config; "auto" values are filled in by transformers from the TrainingArguments."""
    offload = {"device": "cpu", "pin_memory": True}
    return {
        "zero_optimization": {
            "stage": 3,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "offload_optimizer": offload if settings.offload_optimizer else {"device": "none"},
            "offload_param": offload if settings.offload_params else {"device": "none"},
            "stage3_gather_16bit_weights_on_model_save": True,  # the final model is gathered as plain weights
        },
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
    }
