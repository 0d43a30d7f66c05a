"""What a training stage does to the model before training: LoRA on the language model, a frozen vision tower."""

from __future__ import annotations

from dharma_train.training.config import LoraSettings


def lora_config(settings: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=settings.target_modules, task_type="CAUSAL_LM")


def freeze_vision_tower(model) -> int:
    """Stop gradients into the vision tower (and its merger); returns how many parameters were frozen."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if ".visual." in f".{name}":
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen
