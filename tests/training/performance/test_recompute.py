"""recompute=auto: the least recomputation whose measured (or interpolated) peak fits the budget; explicit wins."""

import pytest

from dharma_train.training.config import OptimizationConfig, TrainerConfig
from dharma_train.training.hardware import HardwareConfig
from dharma_train.training.performance.config import PerformanceConfig
from dharma_train.training.performance.recompute import (
    GIB, apply_policy, choose_policy, largest_batch, planned_policy, predicted_peaks)

# Measured on one H200 (issue 19's table, scripts/bench_training.py): 3B full fine-tuning peaks with every layer
# recomputed and with none, optimizer state included.
ALL, OFF = int(52.6 * GIB), int(113.5 * GIB)


def test_a_large_card_recomputes_nothing_and_a_small_budget_everything():
    measured = {"all": ALL, "off": OFF}
    assert choose_policy(measured, 0, int(139 * GIB)) == "off"
    assert choose_policy(measured, 0, int(60 * GIB)) == "all"
    assert choose_policy(measured, 0, int(40 * GIB)) is None


def test_budgets_between_the_ends_pick_every_nth_layer_by_interpolation():
    peaks = predicted_peaks({"all": ALL, "off": OFF})
    assert peaks["every_2"] == ALL + (OFF - ALL) // 2
    assert peaks["all"] < peaks["every_2"] < peaks["every_3"] < peaks["every_4"] < peaks["off"]
    assert choose_policy({"all": ALL, "off": OFF}, 0, int(100 * GIB)) == "every_2"  # 83.1 GiB <= 92 % of 100
    assert choose_policy({"all": ALL, "off": OFF}, int(10 * GIB), int(100 * GIB)) == "keep_3"  # + optimizer state


def test_a_measurement_replaces_the_interpolation_and_a_failed_probe_is_never_chosen():
    measured = {"all": ALL, "off": OFF, "every_4": int(120 * GIB)}  # measured worse than predicted
    assert predicted_peaks(measured)["every_3"] > predicted_peaks({"all": ALL, "off": OFF})["every_3"]
    assert choose_policy({"all": ALL, "off": None}, 0, int(139 * GIB)) == "all"  # off ran out of memory
    assert choose_policy({"all": ALL, "off": None, "every_2": int(80 * GIB)}, 0, int(139 * GIB)) == "every_2"


def test_explicit_settings_win_and_auto_probes_only_where_it_can_measure():
    gpu = dict(device="cuda", precision="bf16")
    assert planned_policy(TrainerConfig(**gpu)) == "auto"
    assert planned_policy(TrainerConfig(device="cpu")) == "off"
    assert planned_policy(TrainerConfig(**gpu, hardware=HardwareConfig(strategy="fsdp2"))) == "all"
    assert planned_policy(TrainerConfig(**gpu, performance=PerformanceConfig(recompute="every_3"))) == "every_3"
    assert planned_policy(TrainerConfig(**gpu, gradient_checkpointing=True)) == "all"
    assert planned_policy(TrainerConfig(**gpu, gradient_checkpointing=False)) == "off"


@pytest.mark.parametrize("value", ["every_1", "keep_0", "some", "every_two"])
def test_a_bad_policy_names_its_key(value):
    from dharma_train.config import typed
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


def test_keep_n_sits_between_every_second_layer_and_all():
    peaks = predicted_peaks({"all": ALL, "off": OFF})
    assert peaks["every_2"] > peaks["keep_3"] > peaks["keep_4"] > peaks["keep_8"] > peaks["all"]
    assert choose_policy({"all": ALL, "off": OFF}, 0, int(75 * GIB)) == "keep_4"  # 67.8 GiB <= 69 GiB


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
