"""The tiny model as the generation tests use it: random init repeats one token, so its weights are perturbed."""

from __future__ import annotations

import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from dharma_train.models.tiny import tiny_model_dir


def perturbed_tiny_model(seed: int = 1, scale: float = 0.1) -> Qwen2_5_VLForConditionalGeneration:
    """The tiny model in fp32, eval mode, every matrix plus seeded noise: answers that vary and end at different
    lengths, which the engine tests need."""
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir(), dtype=torch.float32).eval()
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 2:
                parameter.add_(torch.randn(parameter.shape, generator=noise) * scale)
    return model
