"""Which training speed-ups a run uses (`trainer.performance`); each one is skipped with a log line where it cannot run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PerformanceConfig:
    """Speed and memory options for the trained stages; docs/performance.md measures each on an H100."""

    padding_free: bool = True  # pack each padded batch into one row in the language model: no compute on pad tokens
    fused_kernels: bool = True  # liger-kernel RMSNorm and SwiGLU (CUDA, when liger-kernel is installed)
    compile: bool = False  # torch.compile every vision block and decoder layer (CUDA)
    recompute_every_n_layers: int = 1  # with trainer.gradient_checkpointing: recompute every n-th layer, keep the rest
    fused_optimizer: bool = True  # fused AdamW on CUDA (one kernel for all parameters)
    prefetch_batches: int = 2  # batches each data-loader worker prepares ahead (workers: trainer.dataloader_workers)
    lora_4bit: bool = False  # QLoRA: LoRA stages load the frozen language model in 4-bit NF4 (bitsandbytes)

    def __post_init__(self):
        if self.recompute_every_n_layers < 1:
            raise ValueError("trainer.performance.recompute_every_n_layers must be >= 1, "
                             f"got {self.recompute_every_n_layers}")
        if self.prefetch_batches < 1:
            raise ValueError(f"trainer.performance.prefetch_batches must be >= 1, got {self.prefetch_batches}")

    def check_stages(self, methods: dict[str, str]) -> None:
        """lora_4bit quantizes a LoRA stage's frozen base; a full fine-tuning stage has none, so asking is an error."""
        full = [name for name, method in methods.items() if method != "lora"]
        if self.lora_4bit and full:
            raise ValueError(f"trainer.performance.lora_4bit=true applies to LoRA stages only, and "
                             f"{', '.join(f'stages.{name}' for name in full)} fine-tune all weights "
                             f"(optimization.method=full); set their optimization.method=lora or lora_4bit=false")
