"""The one call each training stage makes: apply the configured speed-ups that can run on this machine."""

from __future__ import annotations

import importlib.util
import logging

from dharma_train.training.performance.config import PerformanceConfig

log = logging.getLogger(__name__)


def speed_up(model, config: PerformanceConfig, device: str) -> dict[str, str]:
    """Patch `model` in place for training on `device`; returns each speed-up's outcome ("on" or why it is off).
    `compile` comes later, once the recompute policy is known (`compile_repeated_layers`)."""
    from dharma_train.models.varlen import varlen_available
    from dharma_train.training.performance.kernels import (
        liger_available,
        use_fused_kernels,
    )
    from dharma_train.training.performance.packing import use_padding_free

    on_gpu = device == "cuda"
    outcome = {}
    if config.padding_free:
        outcome["padding_free"] = _try(on_gpu and varlen_available(), lambda: use_padding_free(model),
                                       "needs CUDA and torch.nn.attention.varlen (PyTorch >= 2.10)")
    if config.fused_kernels:
        outcome["fused_kernels"] = _try(on_gpu and liger_available(),
                                        lambda: use_fused_kernels(model, opaque_to_compile=config.compile != "off"),
                                        "needs CUDA and liger-kernel (pip install liger-kernel)")
    for name, state in outcome.items():
        _say_once(name, state, actionable=on_gpu)
    return outcome


_said: set[tuple[str, str]] = set()


def _say_once(name: str, state: str, actionable: bool) -> None:
    """Each outcome once per process; off a GPU the CUDA speed-ups are off by design (info), on one a warning."""
    if (name, state) in _said:
        return
    _said.add((name, state))
    (log.warning if actionable and state != "on" else log.info)("performance.%s: %s", name, state)


def quantized_base(method: str, config: PerformanceConfig) -> bool:
    """QLoRA: whether a stage of this method loads its frozen base in 4-bit (LoRA and lora_4bit); asked for without
    bitsandbytes it is refused, never silently replaced by a full-precision base."""
    if not (config.lora_4bit and method == "lora"):
        return False
    check_bitsandbytes(config)
    log.info("performance.lora_4bit: on (frozen base in 4-bit NF4)")
    return True


def check_bitsandbytes(config: PerformanceConfig) -> None:
    """lora_4bit needs bitsandbytes installed: refused at run start, before any model loads."""
    from dharma_train.errors import ConfigError

    if config.lora_4bit and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("trainer.performance.lora_4bit=true needs bitsandbytes, which is not installed: "
                          "pip install bitsandbytes, or set trainer.performance.lora_4bit=false (the frozen base then "
                          "loads in 16 or 32 bits instead of 4)")


def _try(possible: bool, apply, reason: str) -> str:
    """Apply when possible; "on" only if some module was actually patched (apply returns how many)."""
    if not possible:
        return f"off ({reason})"
    return "on" if apply() else "off (no Qwen2.5-VL module of that kind in this model)"


def compile_repeated_layers(model, config: PerformanceConfig, device: str, policy: str | None,
                            eager_because: str | None = None) -> str | None:
    """torch.compile the repeated layers, called once the recompute policy is set; recomputed layers checkpoint
    inside their compiled graph (`compiled_layers.py`). `policy` None: FSDP2 / ZeRO-3, whose engine wraps the layers
    after this point (untried with compiled ones). `auto` leaves LoRA eager: on the H200 compiled LoRA's losses left
    eager's by 0.3 % from the second step (full fine-tuning's matched to 4 digits), not explained. `eager_because`:
    the stage's own reason to stay eager."""
    from dharma_train.training.performance.compiled_layers import compile_layers

    if config.compile == "off":
        return None
    if device != "cuda":
        state = "off (needs CUDA)"
    elif eager_because:
        state = f"off ({eager_because})"
    elif policy is None:
        state = "off (FSDP2 / ZeRO-3 wrap the layers inside train(); compiled layers are not tried there)"
    elif config.compile == "auto" and is_lora(model):
        state = ("off for LoRA under auto (its compiled losses differed from eager's on the GPU, not yet explained; "
                 "trainer.performance.compile=on compiles it)")
    else:
        state = _try(True, lambda: compile_layers(model, policy), "")
    _say_once("compile", state if state != "on" or policy == "off" else f"on (recompute={policy} inside the "
              "compiled layers)", actionable=False)  # each "off" is the default's own outcome, not a mistake: info
    return state


def is_lora(model) -> bool:
    """Whether `model` trains LoRA adapters (a peft model, as TRL wraps it for a LoRA stage)."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def prepare_trainer(trainer, settings, stage: str, eager_because: str | None = None) -> dict:
    """What a built trainer gets before `train()`, in this order (train_resumably and the benchmark both call it):
    the master weights moved into the optimizer where asked (the probe must see bf16 adapters and size their fp32
    copies), the batches and recompute policy (planned together where both are auto), then compile once the policy
    is known. Returns {"sampler": token-budget sampler or None, "recompute": record or None under FSDP2 / ZeRO-3,
    "compile": state or None}."""
    from dharma_train.training.performance.master_weights import keep_masters_in_optimizer
    from dharma_train.training.performance.plan import plan_batches

    if settings.performance.master_weights == "optimizer":
        if settings.masters_in_optimizer():
            cast = keep_masters_in_optimizer(trainer)
            _say_once("master_weights", f"optimizer (bf16 parameters, fp32 copies in the optimizer; {cast} trained "
                      "tensors cast to bf16)", actionable=False)
        else:
            _say_once("master_weights", "model (optimizer needs bf16 training in one process or DDP)",
                      actionable=settings.resolved_device() == "cuda")
    sampler, recompute = plan_batches(trainer, settings, stage)  # sampler None: fixed batches
    compiled = compile_repeated_layers(trainer.model, settings.performance, settings.resolved_device(),
                                       recompute["policy"] if recompute else None, eager_because)
    return {"sampler": sampler, "recompute": recompute, "compile": compiled}
