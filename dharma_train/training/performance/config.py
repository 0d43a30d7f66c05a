"""Which training speed-ups a run uses (`trainer.performance`); each is skipped with a log line where it cannot run."""

from __future__ import annotations

import re
from dataclasses import dataclass


MASTER_WEIGHTS = ("model", "optimizer")


@dataclass
class PerformanceConfig:
    """Speed and memory options for the trained stages; docs/performance.md measures each on an H100."""

    padding_free: bool = True  # pack each padded batch into one row in the language model: no compute on pad tokens
    fused_kernels: bool = True  # liger-kernel RMSNorm and SwiGLU (CUDA, when liger-kernel is installed)
    compile: str = "auto"  # torch.compile the repeated layers, recomputed ones too (CUDA, one process, SFT and
    # DPO): auto (full fine-tuning; LoRA stays eager, its compiled losses are not yet explained) | on (LoRA too) | off
    recompute: str = "auto"  # auto: least recomputation that fits, probed at start-up | off | all | every_N | keep_N
    token_budget: str = "auto"  # tokens per micro-batch (per process, SFT on CUDA): auto | off (batch_size pages) | N
    fused_optimizer: bool = True  # fused AdamW on CUDA (one kernel for all parameters)
    prefetch_batches: int = 2  # batches each data-loader worker prepares ahead (workers: trainer.dataloader_workers)
    frozen_vision_cache_gib: str = "auto"  # host memory for a frozen vision tower's outputs, kept per image so later
    # epochs skip the tower: auto (1 off CUDA; 0 on CUDA, where each hit is a copy back, not yet measured) | 0 | GiB
    lora_4bit: bool = False  # QLoRA: LoRA stages load the frozen language model in 4-bit NF4 (bitsandbytes)
    master_weights: str = "model"  # where the fp32 weights live under bf16: model (fp32 parameters, autocast casts
    # them in every forward) | optimizer (bf16 parameters, fp32 copies in the optimizer; one process, not FSDP2/ZeRO-3)

    def __post_init__(self):
        self.recompute = _switch(self.recompute, on="all")
        self.token_budget = _switch(self.token_budget, on="auto")
        self.compile = _switch(self.compile, on="on")
        if self.compile not in ("auto", "on", "off"):
            raise ValueError(f"trainer.performance.compile must be auto, on or off, got {self.compile!r}")
        if self.master_weights not in MASTER_WEIGHTS:
            raise ValueError(f"trainer.performance.master_weights must be one of {list(MASTER_WEIGHTS)}, got "
                             f"{self.master_weights!r}")
        check_policy(self.recompute)
        check_budget(self.token_budget)
        self.frozen_vision_cache_gib = str(self.frozen_vision_cache_gib)
        if self.frozen_vision_cache_gib != "auto" and not _non_negative_number(self.frozen_vision_cache_gib):
            raise ValueError("trainer.performance.frozen_vision_cache_gib must be auto or a number of GiB (0: off), "
                             f"got {self.frozen_vision_cache_gib!r}")
        if self.prefetch_batches < 1:
            raise ValueError(f"trainer.performance.prefetch_batches must be >= 1, got {self.prefetch_batches}")

    def check_stages(self, methods: dict[str, str]) -> None:
        """lora_4bit quantizes a LoRA stage's frozen base; a full fine-tuning stage has none, so asking is an error."""
        full = [name for name, method in methods.items() if method != "lora"]
        if self.lora_4bit and full:
            raise ValueError(f"trainer.performance.lora_4bit=true applies to LoRA stages only, and "
                             f"{', '.join(f'stages.{name}' for name in full)} fine-tune all weights "
                             f"(optimization.method=full); set their optimization.method=lora or lora_4bit=false")


def check_budget(value: str) -> None:
    """Raise ValueError naming the key unless `value` is off, auto or a positive whole number of tokens."""
    if value not in ("off", "auto") and not (value.isdigit() and int(value) > 0):
        raise ValueError(f"trainer.performance.token_budget must be off, auto or a number of tokens, got {value!r}")


def _switch(value, on: str) -> str:
    """YAML reads a bare `off` as false (and `on` as true): both mean the switch, as written."""
    text = str(value)
    return {"False": "off", "false": "off", "True": on, "true": on}.get(text, text)


FIXED = re.compile(r"off|all|(every|keep)_([2-9]|[1-9]\d+)")


def check_policy(value: str) -> None:
    """Raise ValueError naming the key when `value` is not a recompute policy."""
    if value != "auto" and not FIXED.fullmatch(value):
        raise ValueError("trainer.performance.recompute must be auto, off, all, every_N or keep_N (N >= 2), "
                         f"got {value!r}")


def vision_cache_bytes(value: str, device: str) -> int:
    """The frozen vision cache's budget on `device`: auto keeps 1 GiB off CUDA and none on CUDA."""
    if value == "auto":
        return 0 if device == "cuda" else 2**30
    return int(float(value) * 2**30)


def _non_negative_number(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False
