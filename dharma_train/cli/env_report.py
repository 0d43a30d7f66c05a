"""`python -m dharma_train env`: what a bug report needs (as `trl env` prints): versions, devices, extras."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from dharma_train.cli.help import version

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "hydra-core",
            "omegaconf", "huggingface-hub", "pillow", "numpy")
OPTIONAL = {  # package -> what it enables
    "llmcompressor": "the quantize stage (pip install 'dharma_train[quantize]')",
    "compressed-tensors": "loading quantized models",
    "bitsandbytes": "trainer.performance.lora_4bit (QLoRA)",
    "flash-attn": "flash attention on a GPU",
    "liger-kernel": "trainer.performance.fused_kernels",
    "torchvision": "the Qwen2-VL video processor (some processor classes ask for it)",
    "wandb": "tracking=wandb",
    "tensorboard": "tracking=tensorboard",
}
ENVIRONMENT = ("HF_HOME", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES", "WANDB_MODE")


def installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def devices() -> list[str]:
    """Accelerators torch sees, with their memory; or why there are none."""
    import torch

    if not torch.cuda.is_available():
        return [f"CPU only ({os.cpu_count()} cores visible)"]
    return [f"cuda:{i} {torch.cuda.get_device_name(i)}, "
            f"{torch.cuda.get_device_properties(i).total_memory / 1024**3:.0f} GiB" for i in
            range(torch.cuda.device_count())] + [f"CUDA {torch.version.cuda}, bf16: {torch.cuda.is_bf16_supported()}"]


def env_report() -> str:
    lines = [f"- dharma_train version: {version()}", f"- Python: {platform.python_version()}",
             f"- Platform: {platform.platform()}"]
    lines += [f"- {name}: {installed(name)}" for name in PACKAGES]
    lines += [f"- device: {line}" for line in devices()]
    lines += [f"- {name}: {installed(name)} ({purpose})" for name, purpose in OPTIONAL.items()]
    lines += [f"- ${name}: {os.environ[name]}" for name in ENVIRONMENT if name in os.environ]
    return "Copy-paste the lines below into your bug report:\n\n" + "\n".join(lines)
