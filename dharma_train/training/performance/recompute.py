"""How many layers recompute their activations in backward, chosen by measuring memory rather than guessing.

`trainer.performance.recompute: auto` (the default) probes at start-up, on the GPU the stage trains on: one
forward and backward of the largest batch the data makes, first with every layer recomputed, then bisecting the
candidates (least recomputation first: off, every_4, every_3, every_2, keep_3, keep_4, keep_8, all) for the least
recomputation whose measured peak plus the optimizer state (allocated only at the first step) fits the memory
budget: at most four probes. every_N recomputes layers 0, N, 2N, ... of each stack; keep_N all but every N-th
layer, the steps just below "all". The choice, the predicted peak and (after training) the measured one are logged
and kept in the stage's metrics. Explicit settings (`recompute: off | all | every_N | keep_N`, or
`trainer.gradient_checkpointing`) skip the probe. Where nothing can be measured (a CPU, or a sharded engine that
wraps the model only inside `train()`) auto is off on a CPU and every layer under FSDP2 / ZeRO-3. On one process
the policy is set on the model's layers here and the Trainer's own `gradient_checkpointing` stays off, so that
`train()` does not reset it; FSDP2 / ZeRO-3 take it through TrainingArguments.

Selective policies inside a layer (only the MLP, only attention) are not offered: in Qwen2.5-VL's language model
the MLP holds 88 % of a decoder layer's matrix weights (3 x 2048 x 11008 against 2048 x 4608 for q/k/v/o in the
3B shape), so recomputing the MLP alone would cost nearly a whole layer's recompute, while keep_N / every_N give
any share of layers in between.
"""

from __future__ import annotations

import copy
import gc
import logging
import types
from contextlib import contextmanager

import torch

from dharma_train.training.config import planned_recompute
from dharma_train.training.resources import optimizer_state_bytes

log = logging.getLogger(__name__)

GIB = 1024**3
# least recomputation first; every_N recomputes one layer in N of each stack, keep_N all but one in N
CANDIDATES = ("off", "every_4", "every_3", "every_2", "keep_3", "keep_4", "keep_8", "all")
HEADROOM = 0.92  # share of the budget a predicted peak may use: fragmentation, batches a little past the probe's
PROBE_ROWS = 256  # rows sized to find the largest batch; all of them when the data set is smaller


def _period(policy: str) -> int:
    return int(policy.split("_")[1])


def recomputes(policy: str, index: int) -> bool:
    """Whether layer `index` of a stack recomputes its activations in backward under `policy`."""
    if policy in ("off", "all"):
        return policy == "all"
    period = _period(policy)
    return index % period == 0 if policy.startswith("every_") else index % period != period - 1


def recomputed_share(policy: str) -> float:
    """Share of layers whose activations are recomputed: 0 (off) to 1 (all); every_N: 1/N; keep_N: 1 - 1/N."""
    if policy in ("off", "all"):
        return float(policy == "all")
    return 1 / _period(policy) if policy.startswith("every_") else 1 - 1 / _period(policy)


def every_n_layers(policy: str) -> int | None:
    """transformers' `every_n_layers` (for the Trainer's own checkpointing under ZeRO-3/FSDP2); None for off."""
    if policy == "off":
        return None
    return _period(policy) if policy.startswith("every_") else 1


def fits(peak: int | None, extra_bytes: int, budget_bytes: int) -> bool:
    """A probe's peak (None: it ran out of memory) plus `extra_bytes` within HEADROOM of the budget."""
    return peak is not None and peak + extra_bytes <= HEADROOM * budget_bytes


def next_probe(measured: dict[str, int | None], extra_bytes: int, budget_bytes: int,
               candidates: tuple[str, ...] = CANDIDATES) -> str | None:
    """The candidate to measure next, bisecting between the most-recomputing misfit and the least-recomputing fit
    (peaks fall as more layers recompute), the most recomputing candidate first unless a fit is known already;
    None once the choice is decided."""
    fitting = [i for i, p in enumerate(candidates) if p in measured and fits(measured[p], extra_bytes, budget_bytes)]
    if not fitting:
        return None if candidates[-1] in measured else candidates[-1]
    low = max((i for i, p in enumerate(candidates) if p in measured and i not in fitting), default=-1) + 1
    high = min(fitting)
    return candidates[(low + high) // 2] if low < high else None


def choose_policy(measured: dict[str, int | None], extra_bytes: int, budget_bytes: int,
                  candidates: tuple[str, ...] = CANDIDATES) -> str | None:
    """The least recomputation measured to fit; None when not even the most recomputing candidate does."""
    fitting = [p for p in candidates if p in measured and fits(measured[p], extra_bytes, budget_bytes)]
    return fitting[0] if fitting else None


def apply_policy(model, policy: str) -> None:
    """Set per-layer activation checkpointing on `model` (a PeftModel passes it to its base), stack by stack.

    The policy outlives a later `gradient_checkpointing_enable()`: TRL's DPO disables checkpointing around each
    reference forward and enables it again after, which would recompute every layer from the second step on and put
    compiled layers under transformers' wrapper (`compiled_layers.py`); that call re-applies the policy instead."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.__dict__.pop("gradient_checkpointing_enable", None)  # a policy set before: the stock method again
    if policy == "off":
        base.gradient_checkpointing_disable()
        return
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    set_layer_flags(base, policy)
    base._dharma_recompute_policy = policy
    base.gradient_checkpointing_enable = types.MethodType(_enable_policy, base)  # bound: a deepcopy rebinds it


def _enable_policy(self, *args, **kwargs) -> None:
    """`gradient_checkpointing_enable` of a model with a policy set: that policy, whatever is asked."""
    apply_policy(self, self._dharma_recompute_policy)


def set_layer_flags(model, policy: str) -> None:
    """Each repeated layer recomputes under transformers' wrapper as `policy` says, except compiled layers, which
    recompute inside their own graph where they do (`compiled_layers.py`) and never under the wrapper."""
    for stack in layer_stacks(model):
        for index, layer in enumerate(stack):
            layer.gradient_checkpointing = recomputes(policy, index) and getattr(
                layer, "_compiled_call_impl", None) is None


def layer_stacks(model) -> list:
    """The repeated layers (vision blocks, decoder layers), one list per stack."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m)
            and all(isinstance(layer, GradientCheckpointingLayer) for layer in m)]


def largest_batch(trainer, rows: list[int] | None = None) -> dict:
    """`rows` collated (a token-budget sampler's largest batch), else the per-device batch of the largest rows (by
    tokens after the collator) among up to PROBE_ROWS rows."""
    loader = trainer.get_train_dataloader()
    dataset, collate = loader.dataset, loader.collate_fn
    if rows is not None:
        return collate([dataset[i] for i in rows])
    count = len(dataset)
    indices = range(count) if count <= PROBE_ROWS else torch.randperm(
        count, generator=torch.Generator().manual_seed(0))[:PROBE_ROWS].tolist()
    sizes = sorted(((_tokens(collate([dataset[i]])), i) for i in indices), reverse=True)
    chosen = [i for _, i in sizes[:trainer.args.per_device_train_batch_size]]
    return collate([dataset[i] for i in chosen])


def _tokens(batch: dict) -> int:
    """Real (unpadded) tokens of a collated batch, over every `*attention_mask` (DPO has prompt, chosen and
    rejected); positions of every `*input_ids` where a collator gives no mask."""
    masks = [v for k, v in batch.items() if k.endswith("attention_mask") and torch.is_tensor(v)]
    if masks:
        return int(sum(mask.sum() for mask in masks))
    return sum(v.numel() for k, v in batch.items() if k.endswith("input_ids") and torch.is_tensor(v))


def measure_peak(trainer, batch: dict, policy: str) -> int | None:
    """Peak CUDA bytes of one forward and backward of `batch` under `policy`; None when it ran out of memory."""
    model = trainer.model
    apply_policy(model, policy)
    model.train()
    inputs = {k: v.to(trainer.args.device) if torch.is_tensor(v) else v for k, v in batch.items()}
    _release(model)
    torch.cuda.reset_peak_memory_stats()
    try:
        with torch.random.fork_rng(devices=[torch.cuda.current_device()]), trainer.accelerator.autocast():
            trainer.compute_loss(model, inputs).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    except torch.OutOfMemoryError:
        return None
    finally:
        _release(model)


@contextmanager
def metrics_untouched(trainer):
    """TRL's compute_loss logs entropy, accuracy and a running token count: probes must not show in the logs."""
    saved = {name: copy.deepcopy(getattr(trainer, name)) for name in ("_metrics", "_total_train_tokens")
             if hasattr(trainer, name)}
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(trainer, name, value)


def _release(model) -> None:
    model.zero_grad(set_to_none=True)
    gc.collect()
    torch.cuda.empty_cache()


def probe_recompute(trainer, budget_bytes: int, rows: list[int] | None = None,
                    masters_in_optimizer: bool = False) -> dict:
    """Bisect the candidates by measured peaks on the largest batch; set the choice; return it with the numbers."""
    batch = largest_batch(trainer, rows)
    extra = optimizer_state_bytes(trainer.model, masters_in_optimizer)
    measured: dict[str, int | None] = {}
    with metrics_untouched(trainer):
        while (policy := next_probe(measured, extra, budget_bytes)) is not None:
            measured[policy] = measure_peak(trainer, batch, policy)
    choice = choose_policy(measured, extra, budget_bytes)
    if choice is None:
        log.warning("recompute=auto: even with every layer recomputed the largest batch is predicted past %.1f GiB "
                    "of %.1f GiB; training may run out of memory", HEADROOM * budget_bytes / GIB, budget_bytes / GIB)
    policy = choice or "all"
    apply_policy(trainer.model, policy)
    torch.cuda.reset_peak_memory_stats()  # what training reaches is read afterwards against the prediction
    probe = measured.get(policy)
    return {"policy": policy, "probe_tokens": _tokens(batch), "budget_gib": _gib(budget_bytes),
            "optimizer_state_gib": _gib(extra), "probe_peak_gib": None if probe is None else _gib(probe),
            "predicted_peak_gib": None if probe is None else _gib(probe + extra),
            "probed_gib": {p: None if b is None else _gib(b) for p, b in measured.items()}}


def _gib(value: int) -> float:
    return round(value / GIB, 2)


def choose_recompute(trainer, settings, stage: str, largest_rows: list[int] | None = None) -> dict | None:
    """Apply the recompute policy to the trainer's model, probing first when it is auto; returns what was chosen.

    `largest_rows`: the largest micro-batch when a token budget decides them. None under FSDP2 / ZeRO-3, whose
    engines take the policy through TrainingArguments (arguments.py).
    """
    from dharma_train.training.resources import memory_budget_bytes

    policy = planned_recompute(settings)
    if settings.hardware.sharded:
        return None
    if policy != "auto":
        apply_policy(trainer.model, policy)
        explicit = settings.performance.recompute != "auto" or settings.gradient_checkpointing is not None
        log.info("stage %s: recompute=%s (%s)", stage, policy, "set explicitly" if explicit else
                 "auto off CUDA: memory is not probed there, and recomputing would only slow the step")
        return {"policy": policy}
    budget = min(memory_budget_bytes(settings.memory_budget_gb, "cuda"), torch.cuda.mem_get_info()[1])
    choice = probe_recompute(trainer, budget, largest_rows, settings.masters_in_optimizer())
    log.info("stage %s: recompute=%s, chosen by a probe of the largest batch (%d tokens): predicted peak %s GiB "
             "(probe %s GiB + %.1f GiB optimizer state) of a %.1f GiB budget; probed %s", stage, choice["policy"],
             choice["probe_tokens"], choice["predicted_peak_gib"], choice["probe_peak_gib"],
             choice["optimizer_state_gib"], choice["budget_gib"], choice["probed_gib"])
    return choice
