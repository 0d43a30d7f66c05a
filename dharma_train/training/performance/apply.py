"""The one call each training stage makes: apply the configured speed-ups that can run on this machine."""

from __future__ import annotations

import importlib.util
import logging

from dharma_train.training.performance.config import PerformanceConfig

log = logging.getLogger(__name__)


def speed_up(model, config: PerformanceConfig, device: str) -> dict[str, str]:
    """Patch `model` in place for training on `device`; returns each speed-up's outcome ("on" or why it is off)."""
    from dharma_train.models.varlen import varlen_available
    from dharma_train.training.performance.kernels import liger_available, use_fused_kernels
    from dharma_train.training.performance.packing import use_padding_free

    on_gpu = device == "cuda"
    outcome = {}
    if config.padding_free:
        outcome["padding_free"] = _try(on_gpu and varlen_available(), lambda: use_padding_free(model),
                                       "needs CUDA and torch.nn.attention.varlen (PyTorch >= 2.10)")
    if config.fused_kernels:
        outcome["fused_kernels"] = _try(on_gpu and liger_available(),
                                        lambda: use_fused_kernels(model, opaque_to_compile=config.compile),
                                        "needs CUDA and liger-kernel (pip install liger-kernel)")
    if config.compile:
        outcome["compile"] = _try(on_gpu, lambda: compile_layers(model), "needs CUDA")
    for name, state in outcome.items():
        (log.info if state == "on" else log.warning)("performance.%s: %s", name, state)
    return outcome


def quantized_base(method: str, config: PerformanceConfig) -> bool:
    """QLoRA: whether a stage of this method loads its frozen base in 4-bit (LoRA, lora_4bit, bitsandbytes here)."""
    if not (config.lora_4bit and method == "lora"):
        return False
    if importlib.util.find_spec("bitsandbytes") is None:
        log.warning("performance.lora_4bit: off (needs bitsandbytes: pip install bitsandbytes)")
        return False
    log.info("performance.lora_4bit: on (frozen base in 4-bit NF4)")
    return True


def _try(possible: bool, apply, reason: str) -> str:
    """Apply when possible; "on" only if some module was actually patched (apply returns how many)."""
    if not possible:
        return f"off ({reason})"
    return "on" if apply() else "off (no Qwen2.5-VL module of that kind in this model)"


def compile_layers(model) -> int:
    """torch.compile each vision block and decoder layer (the repeated units), with dynamic shapes."""
    compiled = 0
    for module in model.modules():
        if type(module).__name__ in ("Qwen2_5_VLVisionBlock", "Qwen2_5_VLDecoderLayer"):
            module.compile(dynamic=True)
            compiled += 1
    return compiled
