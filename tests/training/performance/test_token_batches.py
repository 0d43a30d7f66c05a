"""Token-budget micro-batches: every row once per epoch, batches within the budget, counts that match the collator,
and an optimizer step over uneven micro-batches that equals one over all of their tokens."""

import pytest
import torch

from dharma_train.training.config import OptimizationConfig, TrainerConfig
from dharma_train.training.performance.config import PerformanceConfig
from dharma_train.training.performance.token_batches import (
    TokenBudgetSampler, pack, planned_budget, resolved_budget, row_tokens)


def test_rows_fill_batches_up_to_the_budget_and_a_long_row_goes_alone():
    lengths = [300, 500, 200, 1500, 100, 100]
    assert pack(lengths, 1000, list(range(6))) == [[0, 1, 2], [3], [4, 5]]
    assert resolved_budget("auto", lengths, 2) == 900 and resolved_budget("4096", lengths, 2) == 4096
    assert resolved_budget("off", lengths, 2) is None


def test_every_row_comes_once_an_epoch_and_processes_get_equal_disjoint_shares():
    lengths = [(i * 37) % 900 + 100 for i in range(50)]
    sampler = TokenBudgetSampler(lengths, budget=1200, seed=3)
    first = list(sampler)
    assert sorted(i for batch in first for i in batch) == list(range(50))
    assert all(sum(lengths[i] for i in batch) <= 1200 for batch in first)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(map(sorted, sampler)) == sorted(map(sorted, first))
    shares = [list(TokenBudgetSampler(lengths, 1200, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == len(first) // 2
    assert not {i for b in shares[0] for i in b} & {i for b in shares[1] for i in b}
    assert sum(lengths[i] for i in sampler.largest()) == max(sum(lengths[i] for i in b) for b in first)


def test_auto_is_off_on_a_cpu_and_a_bad_value_names_its_key():
    from dharma_train.typed_config import typed
    from dharma_train.errors import ConfigError

    auto = PerformanceConfig(token_budget="auto")
    assert planned_budget(TrainerConfig(device="cpu", performance=auto)) == "off"
    assert planned_budget(TrainerConfig(device="cuda", precision="bf16", performance=auto)) == "auto"
    with pytest.raises(ConfigError, match="trainer.performance.token_budget"):
        typed("trainer", TrainerConfig, {"performance": {"token_budget": "lots"}})
    assert typed("trainer", TrainerConfig, {"performance": {"token_budget": 8192}}).performance.token_budget == "8192"
    from omegaconf import OmegaConf

    bare_off = OmegaConf.create("performance: {token_budget: off, recompute: off}")  # YAML reads both as false
    performance = typed("trainer", TrainerConfig, bare_off).performance
    assert (performance.token_budget, performance.recompute) == ("off", "off")


def _trainer(tiny_artifact, pages, folder, **optimization):
    from trl import SFTConfig, SFTTrainer

    from dharma_train.data.conversation import sft_dataset
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.training.arguments import trainer_arguments

    settings = TrainerConfig(device="cpu", precision="fp32", logging_steps=1, checkpoint_every=0)
    arguments = trainer_arguments(OptimizationConfig(method="full", warmup=0, lr_scheduler="constant",
                                                     **optimization), settings, str(folder), [], "t/s")
    arguments.update(optim="sgd", max_grad_norm=0.0)  # the update is -lr x gradient, unclipped
    return SFTTrainer(model=load_model(tiny_artifact), processing_class=load_processor(tiny_artifact.path),
                      args=SFTConfig(**arguments), train_dataset=sft_dataset(pages, "structured"))


def test_token_counts_match_what_the_collator_builds(tiny_artifact, pages, tmp_path):
    trainer = _trainer(tiny_artifact, pages[0], tmp_path, max_steps=1)
    loader = trainer.get_train_dataloader()
    collated = [int(loader.collate_fn([row])["attention_mask"].sum()) for row in loader.dataset]
    assert row_tokens(trainer.train_dataset, trainer.processing_class) == collated


@pytest.mark.slow
def test_a_step_over_uneven_micro_batches_is_the_per_token_mean_over_all_of_them(tiny_artifact, pages, tmp_path):
    """Two micro-batches of different token counts accumulated into one step move the weights exactly as one
    batch of all their rows does: the Trainer divides by the step's labelled tokens, not per micro-batch."""
    from dharma_train.training.performance.token_batches import use_token_budget

    trainer = _trainer(tiny_artifact, pages[0], tmp_path / "budget", max_steps=1, gradient_accumulation=2,
                       learning_rate=1.0)
    settings = TrainerConfig(device="cpu", performance=PerformanceConfig(token_budget="1200"))
    settings.resolved_device = lambda: "cuda"  # token_budget applies as on a GPU; everything runs on the CPU
    sampler = use_token_budget(trainer, settings)
    steps_rows = list(sampler)[:2]
    assert len(steps_rows[0]) != len(steps_rows[1]) or sum(sampler.lengths[i] for i in steps_rows[0]) != sum(
        sampler.lengths[i] for i in steps_rows[1]), "the test needs micro-batches of different sizes"
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    reference = _trainer(tiny_artifact, pages[0], tmp_path / "one", max_steps=1)
    loader = reference.get_train_dataloader()
    batch = loader.collate_fn([loader.dataset[i] for rows in steps_rows for i in rows])
    reference.compute_loss(reference.model, batch).backward()
    for name, parameter in reference.model.named_parameters():
        moved = trainer.model.get_parameter(name).detach() - before[name]
        torch.testing.assert_close(moved, -parameter.grad, rtol=2e-3, atol=1e-6, msg=name)


@pytest.mark.slow
def test_an_sft_stage_trains_on_token_budget_batches(tiny_artifact, pages, tmp_path):
    from dharma_train import SFTStage, SFTStageConfig, StageContext

    settings = TrainerConfig(device="cpu", precision="fp32", checkpoint_every=0,
                             performance=PerformanceConfig(token_budget="1500"))
    config = SFTStageConfig(optimization=OptimizationConfig(method="full", max_steps=2, batch_size=2))
    result = SFTStage("structured", config).run(tiny_artifact, pages[0], tmp_path, StageContext(trainer=settings))
    assert result.metrics["token_budget"] == 1500 and result.metrics["recompute"] == {"policy": "off"}
    assert (tmp_path / "model" / "config.json").is_file()
