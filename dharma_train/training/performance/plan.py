"""Token budget and recomputation chosen together, by predicted speed within the memory budget.

With `token_budget: auto` and `recompute: auto` (SFT on one CUDA process), the recompute probe (recompute.py) runs
for auto's budget (batch_size x the mean page) and then for that budget split in 2, 3 and 4 with gradient
accumulation raised as many times, so an optimizer step still sees the same tokens and the loss stays per token.
A smaller micro-batch may fit with less recomputation; the plan with the highest predicted speed that fits wins:

    speed ~ budget / (budget + STEP_OVERHEAD_TOKENS) / (1 + RECOMPUTE_COST x share of layers recomputed)

A recomputed layer runs its forward twice: a third more of its forward and backward. A micro-batch has a fixed cost
(host dispatch, launch latency, the optimizer's share) that larger ones spread over more tokens. Splits whose best
case (nothing recomputed) cannot beat the plan already found are not probed; a split inherits every policy that fit
a larger budget (its largest batch has no more tokens), so it bisects only the lighter ones. The choice and its
reason are logged in one line and kept in the stage's metrics. An explicit token_budget or recompute setting skips
this: each is respected exactly, and the other is planned alone as before.
"""

from __future__ import annotations

import logging
import math

from dharma_train.training.performance.recompute import (
    CANDIDATES,
    choose_policy,
    fits,
    next_probe,
    recomputed_share,
)

log = logging.getLogger(__name__)

RECOMPUTE_COST = 1 / 3  # a recomputed layer's extra forward, as a share of its forward and backward
STEP_OVERHEAD_TOKENS = 1024  # a micro-batch's fixed cost in tokens' worth: ~10 % of a 14k-token eager step (H200)
SPLITS = (1, 2, 3, 4)  # auto's budget divided by k, gradient accumulation multiplied by k


def predicted_speed(budget: int, policy: str, overhead: int = STEP_OVERHEAD_TOKENS) -> float:
    """Relative tokens per second of micro-batches of `budget` tokens under `policy` (1.0: no overhead, no
    recomputation); `overhead`: a micro-batch's fixed cost in tokens."""
    return budget / (budget + overhead) / (1 + RECOMPUTE_COST * recomputed_share(policy))


def split_budgets(auto_budget: int) -> list[int]:
    """auto's budget and its splits, largest first."""
    return [math.ceil(auto_budget / k) for k in SPLITS]


def known_peaks(measured: dict[int, dict[str, int | None]], budgets: list[int], budget: int, extra_bytes: int,
                memory_bytes: int) -> dict[str, int | None]:
    """`budget`'s own measurements, plus each policy that fit a larger budget (an upper bound of its peak here)."""
    known = {}
    for larger in budgets[:budgets.index(budget)]:
        for policy, peak in measured.get(larger, {}).items():
            if fits(peak, extra_bytes, memory_bytes):
                known[policy] = min(peak, known.get(policy, peak))
    return {**known, **measured.get(budget, {})}


def next_joint_probe(measured: dict[int, dict[str, int | None]], budgets: list[int], extra_bytes: int,
                     memory_bytes: int, overhead: int = STEP_OVERHEAD_TOKENS) -> tuple[int, str] | None:
    """The (budget, policy) to measure next, largest budget first; None once the plan is decided."""
    best = 0.0
    for budget in budgets:
        useful = tuple(p for p in CANDIDATES if predicted_speed(budget, p, overhead) > best)
        if not useful:
            return None  # smaller budgets are slower still
        known = known_peaks(measured, budgets, budget, extra_bytes, memory_bytes)
        policy = next_probe(known, extra_bytes, memory_bytes, useful)
        if policy is not None:
            return budget, policy
        choice = choose_policy(known, extra_bytes, memory_bytes, useful)
        if choice is not None:
            best = predicted_speed(budget, choice, overhead)
    return None


def choose_plan(measured: dict[int, dict[str, int | None]], budgets: list[int], extra_bytes: int,
                memory_bytes: int, overhead: int = STEP_OVERHEAD_TOKENS) -> tuple[int, str] | None:
    """The fastest predicted (budget, policy) known to fit, the larger budget on a tie; None when nothing fits."""
    plans = []
    for budget in budgets:
        policy = choose_policy(known_peaks(measured, budgets, budget, extra_bytes, memory_bytes), extra_bytes,
                               memory_bytes)
        if policy is not None:
            plans.append((predicted_speed(budget, policy, overhead), budget, policy))
    if not plans:
        return None
    _, budget, policy = max(plans, key=lambda plan: (plan[0], plan[1]))
    return budget, policy


def plan_reason(plan: tuple[int, str], budgets: list[int], measured: dict[int, dict[str, int | None]],
                extra_bytes: int, memory_bytes: int, overhead: int = STEP_OVERHEAD_TOKENS) -> str:
    """One line: the plan against auto's budget with the least recomputation that fits it."""
    budget, policy = plan
    split = budgets.index(budget) + 1
    full = choose_policy(known_peaks(measured, budgets, budgets[0], extra_bytes, memory_bytes), extra_bytes,
                         memory_bytes)
    if split == 1 and policy == "off":
        return "auto's budget fits with nothing recomputed"
    if split == 1:
        probed = sum(b in measured for b in budgets[1:])
        return f"auto's budget with recompute={policy}: no split of it ({probed} probed) is predicted faster"
    against = (f"token_budget={budgets[0]} with recompute={full}" if full else
               f"token_budget={budgets[0]}, which does not fit even with every layer recomputed")
    ratio = (f", {predicted_speed(budget, policy, overhead) / predicted_speed(budgets[0], full, overhead):.2f}x "
             "predicted") if full else ""
    return (f"auto's budget split in {split} (gradient accumulation x{split}, same tokens a step), against "
            f"{against}{ratio}")


def plan_and_apply(trainer, settings, stage: str, measure, memory: int,
                   overhead: int = STEP_OVERHEAD_TOKENS) -> tuple[object, dict]:
    """Probe the splits of auto's budget with `measure(trainer, batch, policy)` (recompute.measure_peak on a GPU)
    within `memory` bytes, install the chosen sampler and gradient accumulation, set the policy; returns the sampler
    and the record."""
    from dharma_train.training.performance.recompute import (
        GIB,
        HEADROOM,
        _gib,
        _tokens,
        apply_policy,
        largest_batch,
        metrics_untouched,
    )
    from dharma_train.training.resources import optimizer_state_bytes
    from dharma_train.training.performance.token_batches import (
        TokenBudgetSampler,
        install_sampler,
        resolved_budget,
        row_tokens,
    )

    lengths = row_tokens(trainer.train_dataset, trainer.processing_class)
    budgets = split_budgets(resolved_budget("auto", lengths, trainer.args.per_device_train_batch_size))
    extra = optimizer_state_bytes(trainer.model, settings.masters_in_optimizer())
    batches, measured = {}, {}
    with metrics_untouched(trainer):
        while (probe := next_joint_probe(measured, budgets, extra, memory, overhead)) is not None:
            budget, policy = probe
            if budget not in batches:
                largest = TokenBudgetSampler(lengths, budget, settings.seed).largest()
                batches[budget] = largest_batch(trainer, largest)
            measured.setdefault(budget, {})[policy] = measure(trainer, batches[budget], policy)
    plan = choose_plan(measured, budgets, extra, memory, overhead)
    if plan is None:
        log.warning("stage %s: even with every layer recomputed and auto's token budget split in %d, the largest "
                    "batch is predicted past %.1f GiB of %.1f GiB; training may run out of memory", stage, SPLITS[-1],
                    HEADROOM * memory / GIB, memory / GIB)
    budget, policy = plan or (budgets[-1], "all")
    split = budgets.index(budget) + 1
    sampler = install_sampler(trainer, settings, lengths, budget, accumulation=split)
    apply_policy(trainer.model, policy)
    peak = known_peaks(measured, budgets, budget, extra, memory).get(policy)
    reason = (plan_reason(plan, budgets, measured, extra, memory, overhead) if plan else
              "nothing fits; the smallest budget with every layer recomputed")
    record = {"policy": policy, "token_budget": budget, "split": split, "reason": reason,
              "probe_tokens": _tokens(batches[budget]) if budget in batches else None,
              "budget_gib": _gib(memory), "optimizer_state_gib": _gib(extra),
              "probe_peak_gib": None if peak is None else _gib(peak),
              "predicted_peak_gib": None if peak is None else _gib(peak + extra),
              "probed_gib": {f"{b}:{p}": None if v is None else _gib(v) for b, row in measured.items()
                             for p, v in row.items()}}
    log.info("stage %s: token_budget=%d, recompute=%s: %s; predicted peak %s GiB of %.1f GiB; probed %s", stage,
             budget, policy, reason, record["predicted_peak_gib"], record["budget_gib"], record["probed_gib"])
    return sampler, record


def plan_batches(trainer, settings, stage: str) -> tuple[object | None, dict | None]:
    """The token-budget sampler (None: fixed batches) and the recompute record (None under FSDP2 / ZeRO-3) of a stage:
    planned together where both are auto on an SFT stage, else each as set (token_batches.py, recompute.py)."""
    import torch
    from trl import SFTTrainer

    from dharma_train.training.config import planned_recompute
    from dharma_train.training.performance.recompute import choose_recompute, measure_peak
    from dharma_train.training.performance.token_batches import planned_budget, use_token_budget
    from dharma_train.training.resources import memory_budget_bytes

    if planned_budget(settings) == "auto" and planned_recompute(settings) == "auto" and isinstance(trainer, SFTTrainer):
        memory = min(memory_budget_bytes(settings.memory_budget_gb, "cuda"), torch.cuda.mem_get_info()[1])
        planned = plan_and_apply(trainer, settings, stage, measure_peak, memory)
        torch.cuda.reset_peak_memory_stats()  # what training reaches is read afterwards against the prediction
        return planned
    sampler = use_token_budget(trainer, settings)
    return sampler, choose_recompute(trainer, settings, stage, sampler.largest() if sampler else None)
