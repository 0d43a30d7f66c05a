"""Will it fit: free disk before a save, memory before a run starts, and a clear message when CUDA runs out anyway.

The memory estimate counts what training keeps per parameter and nothing else (activations depend on pages and
batch): full fine-tuning holds fp32 weights (4 bytes), gradients (4) and AdamW's two moments (8) for every
trainable parameter, 4 bytes for each frozen one, and a frozen reference copy for DPO; with the master weights in the
optimizer, bf16 weights (2) and gradients (2), the fp32 copy (4) and the moments (8), 2 bytes for each frozen one.
LoRA holds the base in the training dtype plus a negligible adapter. It is a floor: a run over it cannot fit, a run
under it still may not.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from dharma_train.errors import ResourceError

GB = 1024**3
DISK_MARGIN = 1.05  # 5 % on top of the estimate: processor files, JSON, filesystem overhead
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def check_free_disk(folder: str | Path, needed_bytes: int, what: str) -> None:
    """Raise ResourceError, before writing anything, when the disk holding `folder` has too little room."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < needed_bytes * DISK_MARGIN:
        raise ResourceError(f"{what} needs about {needed_bytes / GB:.2f} GB in {existing} but only "
                            f"{free / GB:.2f} GB are free; free some space or point output_dir at a larger disk")


def tensor_bytes(model, dtype: str | None = None, trainable_only: bool = False) -> int:
    """Bytes of the model's parameters, as stored or cast to `dtype`."""
    total = 0
    for parameter in model.parameters():
        if trainable_only and not parameter.requires_grad:
            continue
        size = DTYPE_BYTES[dtype] if dtype else parameter.element_size()
        total += parameter.numel() * size
    return total


def optimizer_state_bytes(model, masters_in_optimizer: bool = False) -> int:
    """AdamW's two moments, in each trainable parameter's dtype, plus (master_weights=optimizer) the fp32 copy of
    each, the moments then fp32 too: allocated at the first step, after any probe."""
    if masters_in_optimizer:
        return sum(12 * p.numel() for p in model.parameters() if p.requires_grad)
    return sum(2 * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def checkpoint_bytes(model, masters_in_optimizer: bool = False) -> int:
    """One trainer checkpoint: the saved weights (the adapter alone for LoRA) plus the optimizer's state."""
    trainable = tensor_bytes(model, trainable_only=True)
    saved = trainable if hasattr(model, "peft_config") else tensor_bytes(model)
    return saved + optimizer_state_bytes(model, masters_in_optimizer)


def training_memory_bytes(total: int, vision: int, method: str, freeze_vision: bool, weight_dtype: str,
                          kind: str) -> int:
    """The per-parameter floor described in the module docstring, for one stage."""
    weight = DTYPE_BYTES[weight_dtype]
    if method == "lora":
        return total * weight
    trainable = total - vision if freeze_vision else total
    master = 4 if weight < 4 else 0  # half-precision weights: the fp32 copy in the optimizer
    estimate = total * weight + trainable * (weight + master + 8)
    if kind == "dpo":
        estimate += total * 4  # the frozen reference model
    return estimate


def parameter_counts(model_path: str) -> tuple[int, int]:
    """(all parameters, vision-tower parameters) from the model's config alone: built on the meta device, no weights."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    if not Path(model_path).is_dir():  # a hub id: read the cached config.json, with no network round trip
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_path, "config.json")
        model_path = str(Path(cached).parent) if isinstance(cached, str) else model_path
    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    return total, vision


def memory_budget_bytes(budget_gb: float | None, device: str) -> int | None:
    """The configured budget, else the GPU's memory; None (no check) on a CPU without a budget."""
    if budget_gb is not None:
        return int(budget_gb * GB)
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return None


def check_training_memory(model_path: str, trained: dict, trainer) -> None:
    """Refuse, before any weights load, a stage whose memory floor exceeds the budget; name the knobs that help.
    `trained`: each training stage's name -> (kind, OptimizationConfig)."""
    budget = memory_budget_bytes(trainer.memory_budget_gb, trainer.resolved_device())
    if budget is None or not trained:
        return
    total, vision = parameter_counts(model_path)
    for name, (kind, opt) in trained.items():
        needed = training_memory_bytes(total, vision, opt.method, opt.freeze_vision,
                                       trainer.training_dtype(opt.method), kind)
        if needed > budget:
            raise ResourceError(
                f"stage {name}: {opt.method} fine-tuning of {model_path} ({total / 1e9:.2f} B parameters) needs at "
                f"least {needed / GB:.0f} GB for weights, gradients and optimizer state, before activations; the "
                f"memory budget is {budget / GB:.0f} GB (trainer.memory_budget_gb, or the GPU's memory). Use "
                f"stages.{name}.optimization.method=lora, keep optimization.freeze_vision=true, or a larger GPU")


def training_knobs(stage: str, opt, mining_batch: int | None, context) -> list[str]:
    """What lowers a stage's memory, with the current values: `opt` its OptimizationConfig (None: it trains
    nothing), `mining_batch` the batch its pair mining generates with (None: it mines nothing)."""
    knobs = []
    if opt is not None:
        knobs.append(f"stages.{stage}.optimization.batch_size (now {opt.batch_size}; raise gradient_accumulation, "
                     f"now {opt.gradient_accumulation}, to keep the effective batch)")
    if mining_batch is not None:
        knobs.append(f"stages.{stage}.mining.batch_size (now {mining_batch}) for pair mining")
    knobs.append(f"model.max_pixels, the pixel budget per page image (now {context.model.max_pixels})")
    from dharma_train.training.config import planned_recompute

    knobs.append(f"trainer.performance.recompute=all (now {planned_recompute(context.trainer)}), or "
                 f"trainer.memory_budget_gb below the GPU's memory so that recompute=auto keeps more headroom")
    if opt is not None and opt.method == "full":
        knobs.append(f"stages.{stage}.optimization.method=lora")
    return knobs


def evaluation_knobs(evaluation, context) -> list[str]:
    return [f"evaluation.batch_size (now {evaluation.batch_size})",
            f"model.max_pixels, the pixel budget per page image (now {context.model.max_pixels})",
            f"evaluation.max_new_tokens (now {evaluation.max_new_tokens})"]


@contextmanager
def explain_out_of_memory(where: str, knobs: list[str]):
    """Turn CUDA's out-of-memory error into one message that says where it happened and what to lower."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        first_line = str(error).splitlines()[0] if str(error) else "out of memory"
        raise ResourceError(f"CUDA ran out of memory {where} ({first_line}). Lower one of: " + "; ".join(knobs)
                            ) from None
