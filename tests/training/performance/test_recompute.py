"""recompute=auto: bisection for the least recomputation whose measured peak fits the budget; explicit wins."""

import pytest

from dharma_train.training.config import (
    OptimizationConfig,
    TrainerConfig,
    planned_recompute,
)
from dharma_train.training.hardware import HardwareConfig
from dharma_train.training.performance.config import PerformanceConfig
from dharma_train.training.performance.recompute import (
    CANDIDATES,
    GIB,
    apply_policy,
    choose_policy,
    largest_batch,
    metrics_untouched,
    next_probe,
    recomputed_share,
)

# Measured on one H200 (issue 19's table, scripts/benchmarks/bench_training.py, batches of ~14,000 tokens): 3B full
# fine-tuning's training peak with every layer recomputed and with none, optimizer state included. Between the
# two, peaks are taken as linear in the share of layers recomputed: a stand-in for the GPU probe's measurements.
ALL, OFF = 52.6 * GIB, 113.5 * GIB


def _peak(policy):
    return int(OFF + (ALL - OFF) * recomputed_share(policy))


def _bisect(budget_gib, extra_gib=0.0, peak=_peak):
    measured = {}
    while (policy := next_probe(measured, int(extra_gib * GIB), int(budget_gib * GIB))) is not None:
        measured[policy] = peak(policy)
    return choose_policy(measured, int(extra_gib * GIB), int(budget_gib * GIB)), list(measured)


def test_a_large_card_recomputes_nothing_in_four_probes():
    assert _bisect(139) == ("off", ["all", "every_2", "every_4", "off"])


def test_an_80_gb_budget_keeps_one_layer_in_four():
    """keep_4: 67.8 GiB within 92 % of 75; every_2 (83.1) and keep_3 (72.9) are over."""
    assert _bisect(75) == ("keep_4", ["all", "every_2", "keep_4", "keep_3"])


def test_the_optimizer_state_counts_and_a_budget_below_every_layer_gives_none():
    assert _bisect(100)[0] == "every_2"  # 83.1 GiB within 92 GiB
    assert _bisect(100, extra_gib=10)[0] == "keep_3"  # + 10 GiB: every_2 over, keep_3 (82.9) within
    assert _bisect(60)[0] == "all" and _bisect(40) == (None, ["all"])


def test_a_probe_that_ran_out_of_memory_is_a_misfit():
    """The H200 run: with every layer recomputed the largest batch (four pages padded to 24,396 positions) peaked at
    32.3 GiB + 23.0 GiB optimizer state; with none it ran out of the card's 139.8 GiB."""
    measured = {"all": int(32.31 * GIB), "off": None}
    assert next_probe(measured, int(22.99 * GIB), int(139.8 * GIB)) == "keep_3"  # between every_4 and all
    assert choose_policy(measured, int(22.99 * GIB), int(139.8 * GIB)) == "all"
    assert _bisect(139, peak=lambda p: None if recomputed_share(p) < 0.5 else _peak(p))[0] == "every_2"


def test_an_out_of_order_measurement_still_decides():
    measured = {"all": int(ALL), "every_2": None, "every_4": int(60 * GIB)}  # noise: every_4 fits, every_2 not
    assert next_probe(measured, 0, int(75 * GIB)) is None
    assert choose_policy(measured, 0, int(75 * GIB)) == "every_4"
    assert CANDIDATES[0] == "off" and CANDIDATES[-1] == "all"


def test_explicit_settings_win_and_auto_probes_only_where_it_can_measure():
    gpu = dict(device="cuda", precision="bf16")
    assert planned_recompute(TrainerConfig(**gpu)) == "auto"
    assert planned_recompute(TrainerConfig(device="cpu")) == "off"
    assert planned_recompute(TrainerConfig(**gpu, hardware=HardwareConfig(strategy="fsdp2"))) == "all"
    assert planned_recompute(TrainerConfig(**gpu, performance=PerformanceConfig(recompute="every_3"))) == "every_3"
    assert planned_recompute(TrainerConfig(**gpu, gradient_checkpointing=True)) == "all"
    assert planned_recompute(TrainerConfig(**gpu, gradient_checkpointing=False)) == "off"


@pytest.mark.parametrize("value", ["every_1", "keep_0", "some", "every_two"])
def test_a_bad_policy_names_its_key(value):
    from dharma_train.typed_config import typed
    from dharma_train.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.performance.recompute"):
        typed("trainer", TrainerConfig, {"performance": {"recompute": value}})


def test_policies_set_each_stack_of_the_real_model(tiny_artifact):
    from dharma_train.models.loading import load_model

    model = load_model(tiny_artifact)
    vision, text = model.model.visual.blocks, model.model.language_model.layers
    apply_policy(model, "every_2")
    for stack in (vision, text):
        assert [m.gradient_checkpointing for m in stack] == [i % 2 == 0 for i in range(len(stack))]
    apply_policy(model, "keep_3")
    assert [m.gradient_checkpointing for m in text] == [i % 3 != 2 for i in range(len(text))]
    apply_policy(model, "off")
    assert not any(m.gradient_checkpointing for m in (*vision, *text))


@pytest.mark.parametrize("lora", [False, True])
def test_the_policy_outlives_trls_reference_forward_toggle(tiny_artifact, lora):
    """TRL's DPO wraps each reference forward in `disable_gradient_checkpointing`, which enables checkpointing again
    afterwards: the layers must come back to the policy (keep_3 here), not to every layer, for a PeftModel too; a
    deep copy keeps the policy for itself."""
    import copy

    from peft import get_peft_model
    from trl.models.utils import disable_gradient_checkpointing

    from dharma_train.models.loading import load_model
    from dharma_train.training.config import LoraSettings
    from dharma_train.training.model_setup import lora_config

    model = load_model(tiny_artifact)
    if lora:
        model = get_peft_model(model, lora_config(LoraSettings()))
    apply_policy(model, "keep_2")
    layers = [*model.get_base_model().model.visual.blocks, *model.get_base_model().model.language_model.layers] \
        if lora else [*model.model.visual.blocks, *model.model.language_model.layers]
    policy = [m.gradient_checkpointing for m in layers]
    assert policy == [True, False, True, False]
    with disable_gradient_checkpointing(model, {"use_reentrant": True}):
        assert not any(m.gradient_checkpointing for m in layers)
    assert [m.gradient_checkpointing for m in layers] == policy
    assert layers[0]._gradient_checkpointing_func.keywords == {"use_reentrant": False}, "our kwargs, not TRL's"
    copied = copy.deepcopy(model)
    apply_policy(model, "off")
    copied.gradient_checkpointing_enable()
    copied_layers = [m for m in copied.modules() if type(m).__name__ in ("Qwen2_5_VLVisionBlock",
                                                                          "Qwen2_5_VLDecoderLayer")]
    assert [m.gradient_checkpointing for m in copied_layers] == policy
    assert not any(m.gradient_checkpointing for m in layers)


def test_the_probe_batch_holds_the_largest_rows(tiny_artifact, pages, tmp_path):
    from trl import SFTConfig, SFTTrainer

    from dharma_train.data.conversation import sft_dataset
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.training.arguments import trainer_arguments

    settings = TrainerConfig(device="cpu", precision="fp32", checkpoint_every=0)
    optimization = OptimizationConfig(method="full", max_steps=1, batch_size=2)
    trainer = SFTTrainer(model=load_model(tiny_artifact), processing_class=load_processor(tiny_artifact.path),
                         args=SFTConfig(**trainer_arguments(optimization, settings, str(tmp_path), [], "t/s")),
                         train_dataset=sft_dataset(pages[0], "structured"))
    loader = trainer.get_train_dataloader()
    lengths = sorted(int(loader.collate_fn([row])["attention_mask"].sum()) for row in loader.dataset)
    batch = largest_batch(trainer)
    assert sorted(batch["attention_mask"].sum(-1).tolist()) == lengths[-2:]
    trainer.model.train()
    with metrics_untouched(trainer):  # what the probe does with each batch; the training logs must not show it
        trainer.compute_loss(trainer.model, batch)
    assert trainer._total_train_tokens == 0 and not any(trainer._metrics["train"].values())
    trainer.compute_loss(trainer.model, batch)
    assert trainer._total_train_tokens == sum(lengths[-2:]), "the check above must be able to fail"


def test_the_log_says_why_recompute_is_off(tiny_artifact, caplog):
    """`set explicitly` only when a user set it; auto on a CPU says it was auto's choice."""
    from types import SimpleNamespace

    from dharma_train.models.loading import load_model
    from dharma_train.training.performance.recompute import choose_recompute

    trainer = SimpleNamespace(model=load_model(tiny_artifact))
    with caplog.at_level("INFO", logger="dharma_train.training.performance.recompute"):
        choose_recompute(trainer, TrainerConfig(device="cpu"), "auto_stage")
        choose_recompute(trainer, TrainerConfig(device="cpu", performance=PerformanceConfig(recompute="off")),
                         "user_stage")
    lines = {record.getMessage().split(":")[0]: record.getMessage() for record in caplog.records}
    assert "set explicitly" not in lines["stage auto_stage"] and "auto off CUDA" in lines["stage auto_stage"]
    assert "set explicitly" in lines["stage user_stage"]
