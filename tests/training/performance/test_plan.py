"""Token budget and recomputation planned together: the fastest predicted plan that fits, found in few probes."""

import itertools
from types import SimpleNamespace

import pytest

from dharma_train.training.config import TrainerConfig
from dharma_train.training.performance.plan import (
    choose_plan,
    next_joint_probe,
    plan_batches,
    plan_reason,
    predicted_speed,
    split_budgets,
)
from dharma_train.training.performance.recompute import CANDIDATES, GIB, fits, recomputed_share

# 3B full fine-tuning on one H200 (issue 19's table, batches of ~14,000 tokens): 52.6 GiB at peak with every layer
# recomputed, 113.5 GiB with none, 23 GiB of it AdamW state. Taken as linear in the batch's tokens and in the share
# of layers recomputed (a recomputed layer still keeps its input): a stand-in for the GPU probe's measurements.
OPTIMIZER = 23 * GIB
STATIC = 25.6 * GIB  # weights and gradients
ACTIVATIONS_PER_TOKEN = (113.5 - 23 - 25.6) * GIB / 14_000
KEPT_WHEN_RECOMPUTED = 0.06  # of a layer's activations: its input
AUTO_BUDGET = 14_913  # the 3B LoRA run on an 80 GB card


def _peak(budget, policy):
    kept = 1 - (1 - KEPT_WHEN_RECOMPUTED) * recomputed_share(policy)
    return int(STATIC + ACTIVATIONS_PER_TOKEN * budget * kept)


def _plan(memory_gib, peak=_peak):
    budgets, memory, measured = split_budgets(AUTO_BUDGET), int(memory_gib * GIB), {}
    while (probe := next_joint_probe(measured, budgets, OPTIMIZER, memory)) is not None:
        budget, policy = probe
        assert policy not in measured.get(budget, {}), "a probe repeated"
        measured.setdefault(budget, {})[policy] = peak(budget, policy)
    return choose_plan(measured, budgets, OPTIMIZER, memory), measured


def _best_by_brute_force(memory_gib):
    fitting = [(b, p) for b, p in itertools.product(split_budgets(AUTO_BUDGET), CANDIDATES)
               if fits(_peak(b, p), OPTIMIZER, int(memory_gib * GIB))]
    return max(fitting, key=lambda plan: (predicted_speed(*plan), plan[0]), default=None)


def test_a_large_card_keeps_autos_budget_with_nothing_recomputed_and_probes_no_split():
    plan, measured = _plan(139)
    assert plan == (AUTO_BUDGET, "off")
    assert list(measured) == [AUTO_BUDGET]


def test_an_80_gb_card_trades_recomputation_for_a_smaller_budget():
    """keep_4 fits auto's budget in 79.2 GiB; a third of the budget fits with nothing recomputed, and is predicted
    faster despite three micro-batches' overheads; the splits probe only what could beat the plan found before."""
    plan, measured = _plan(79.2)
    assert _peak(AUTO_BUDGET, "keep_4") + OPTIMIZER <= 0.92 * 79.2 * GIB < _peak(AUTO_BUDGET, "keep_3") + OPTIMIZER
    budgets = split_budgets(AUTO_BUDGET)
    assert plan == (budgets[2], "off")
    assert predicted_speed(*plan) > predicted_speed(AUTO_BUDGET, "keep_4")
    assert [len(measured[b]) for b in budgets[:3]] == [4, 3, 1] and budgets[3] not in measured


@pytest.mark.parametrize("memory_gib", [50, 60, 70, 79.2, 90, 100, 110, 125, 139])
def test_the_probes_find_the_fastest_plan_that_fits(memory_gib):
    assert _plan(memory_gib)[0] == _best_by_brute_force(memory_gib)


def test_splits_that_fit_no_better_are_probed_once_each_and_the_larger_budget_stays():
    """Only every layer recomputed fits, at any budget: each split is probed once, at the most recomputation that
    could still beat auto's budget with all, and does not fit; auto's budget stays."""
    plan, measured = _plan(139, peak=lambda budget, policy: _peak(14_000, policy) if policy == "all" else None)
    assert plan == (AUTO_BUDGET, "all")
    assert [list(measured[b]) for b in split_budgets(AUTO_BUDGET)[1:]] == [["keep_4"], ["every_2"], ["every_3"]]
    assert all(predicted_speed(b, p) > predicted_speed(AUTO_BUDGET, "all") for b in measured for p in measured[b]
               if b != AUTO_BUDGET)


def test_a_probe_that_ran_out_of_memory_is_a_misfit_and_nothing_fitting_gives_none():
    plan, measured = _plan(139, peak=lambda budget, policy: None)
    assert plan is None and measured == {AUTO_BUDGET: {"all": None}} | {b: {"all": None} for b in
                                                                       split_budgets(AUTO_BUDGET)[1:]}


def test_the_reason_names_the_split_and_what_it_replaced():
    budgets = split_budgets(AUTO_BUDGET)
    plan, measured = _plan(79.2)
    memory = int(79.2 * GIB)
    reason = plan_reason(plan, budgets, measured, OPTIMIZER, memory)
    assert reason.startswith("auto's budget split in 3 (gradient accumulation x3")
    assert f"token_budget={AUTO_BUDGET} with recompute=keep_4" in reason and "x predicted" in reason
    plan, measured = _plan(139)
    assert plan_reason(plan, budgets, measured, OPTIMIZER, int(139 * GIB)) == \
        "auto's budget fits with nothing recomputed"
    plan, measured = _plan(139, peak=lambda budget, policy: _peak(14_000, policy) if policy == "all" else None)
    assert plan_reason(plan, budgets, measured, OPTIMIZER, int(139 * GIB)) == \
        "auto's budget with recompute=all: no split of it (3 probed) is predicted faster"


def test_off_a_gpu_and_with_explicit_settings_nothing_is_planned_jointly(tiny_artifact):
    from dharma_train.models.loading import load_model

    trainer = SimpleNamespace(model=load_model(tiny_artifact))
    assert plan_batches(trainer, TrainerConfig(device="cpu"), "stage") == (None, {"policy": "off"})


def _sft_trainer(tiny_artifact, pages, folder):
    """The real SFT trainer on the tiny pages: batch 4, gradient accumulation 2."""
    from trl import SFTConfig, SFTTrainer

    from dharma_train.data.conversation import sft_dataset
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.training.arguments import trainer_arguments
    from dharma_train.training.config import OptimizationConfig

    settings = TrainerConfig(device="cpu", precision="fp32", checkpoint_every=0)
    optimization = OptimizationConfig(method="full", max_steps=1, batch_size=4, gradient_accumulation=2)
    return SFTTrainer(model=load_model(tiny_artifact), processing_class=load_processor(tiny_artifact.path),
                      args=SFTConfig(**trainer_arguments(optimization, settings, str(folder), [], "t/s")),
                      train_dataset=sft_dataset(pages, "structured"))


def test_the_plan_installs_the_split_its_gradient_accumulation_and_the_policy(tiny_artifact, pages, tmp_path):
    """The real SFT trainer on the tiny pages (rows of 220 to 325 tokens, auto's budget 1,051), peaks from each probe
    batch's real tokens (the memory model above at 14x the tokens, standing in for the GPU's measurement; the
    micro-batch overhead at 1/14 to match): auto's budget needs recomputation in 79.2 GiB, a third of it (its largest
    batch one row of 325 tokens) does not."""
    from dharma_train.training.performance.plan import plan_and_apply
    from dharma_train.training.performance.recompute import _tokens

    trainer = _sft_trainer(tiny_artifact, pages[0], tmp_path)
    settings = TrainerConfig(device="cpu", precision="fp32", checkpoint_every=0)
    probed = []

    def measure(trainer, batch, policy):
        probed.append((_tokens(batch), policy))
        return _peak(14 * _tokens(batch), policy) + OPTIMIZER  # the tiny model's own AdamW state is a few MB

    sampler, record = plan_and_apply(trainer, settings, "stage", measure, int(79.2 * GIB), overhead=1024 // 14)
    assert (record["split"], record["token_budget"], record["policy"]) == (3, 351, "off")
    assert sampler.budget == 351 and record["probe_tokens"] == 325
    assert trainer.args.gradient_accumulation_steps == 2 * record["split"]
    assert trainer._get_train_sampler() is sampler
    assert not any(layer.gradient_checkpointing for layer in trainer.model.model.language_model.layers)
    assert probed[0][1] == "all" and max(tokens for tokens, _ in probed) == probed[0][0]
    assert record["reason"].startswith(f"auto's budget split in {record['split']}")


def test_an_explicit_policy_keeps_autos_budget_and_the_configured_accumulation(tiny_artifact, pages, tmp_path):
    """recompute=every_3 set by the user: the budget is auto's alone (1,051 tokens), nothing is probed or split."""
    from dharma_train.training.performance.config import PerformanceConfig

    trainer = _sft_trainer(tiny_artifact, pages[0], tmp_path)
    settings = TrainerConfig(device="cpu", performance=PerformanceConfig(recompute="every_3"))
    settings.resolved_device = lambda: "cuda"  # token_budget auto applies as on a GPU; nothing here needs one
    sampler, recompute = plan_batches(trainer, settings, "stage")
    assert (sampler.budget, recompute) == (1051, {"policy": "every_3"})
    assert trainer.args.gradient_accumulation_steps == 2
    assert [layer.gradient_checkpointing for layer in trainer.model.model.language_model.layers] == [True, False]
