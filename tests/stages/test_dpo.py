"""DPO on the tiny model: LoRA (base as implicit reference) and full fine-tuning (explicit frozen reference)."""

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText

from dharma_train import DPOStage, DPOStageConfig, StageContext
from dharma_train.data.pairs import load_pairs, loop_pairs, save_pairs
from dharma_train.errors import DataError
from dharma_train.stages.mining import REASONS, MiningConfig
from dharma_train.training.config import OptimizationConfig, TrainerConfig

CONTEXT = StageContext(trainer=TrainerConfig(device="cpu", precision="fp32", logging_steps=1))


def _dpo(method, **extra):
    extra.setdefault("pairs", "synthetic")
    return DPOStageConfig(optimization=OptimizationConfig(method=method, max_steps=2, batch_size=4,
                                                          learning_rate=1e-3), **extra)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full"])
def test_dpo_trains_on_synthetic_pairs_and_keeps_them(tiny_artifact, pages, tmp_path, method):
    result = DPOStage("dpo", _dpo(method, sft_loss_weight=0.2)).run(tiny_artifact, pages[0], tmp_path, CONTEXT)
    assert result.metrics["pairs"] == len(pages[0])
    assert len(load_pairs(tmp_path)) == len(pages[0])  # the pairs trained on are saved for inspection
    before = AutoModelForImageTextToText.from_pretrained(tiny_artifact.path).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(result.artifact.path).state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)


@pytest.mark.slow
def test_dpo_reads_given_pairs_from_a_file(tiny_artifact, pages, tmp_path):
    pairs_dir = tmp_path / "given"
    save_pairs(loop_pairs(pages[0], "structured", seed=3)[:4], pairs_dir)
    result = DPOStage("dpo", _dpo("lora", pairs=str(pairs_dir))).run(tiny_artifact, pages[0], tmp_path / "out",
                                                                    CONTEXT)
    assert result.metrics["pairs"] == 4


def test_missing_pairs_file_is_named(tiny_artifact, pages, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        DPOStage("dpo", _dpo("lora", pairs=str(tmp_path / "nope.jsonl"))).run(
            tiny_artifact, pages[0], tmp_path, CONTEXT)


SMALL_MINING = MiningConfig(samples_per_page=1, max_new_tokens=24, batch_size=8, min_pairs=4,
                            reasons=list(REASONS))  # every reason: an untrained model rarely loops in 24 tokens


@pytest.mark.slow
def test_mined_pairs_are_the_models_own_failures_with_provenance(tiny_artifact, pages, tmp_path):
    result = DPOStage("dpo", _dpo("lora", pairs="mined", mining=SMALL_MINING)).run(
        tiny_artifact, pages[0], tmp_path, CONTEXT)
    mined = load_pairs(tmp_path)
    assert result.metrics["pairs"] == len(mined) >= 4
    assert {pair.source for pair in mined} <= {"greedy", "sample-0"}
    assert all(pair.reason in ("degenerate", "invalid_json", "schema", "furniture_repeat") for pair in mined)
    assert all(pair.chosen == page_answer(pages[0], pair.id) for pair in mined)
    summary = json.loads((tmp_path / "pairs_summary.json").read_text())
    assert summary["mining"]["generated"] == 2 * len(pages[0])  # greedy + one sample per page
    assert sum(summary["mining"]["pairs_by_reason"].values()) == len(mined)


@pytest.mark.slow
def test_too_few_mined_pairs_skip_or_fail_as_configured(tiny_artifact, pages, tmp_path):
    picky = MiningConfig(greedy=True, samples_per_page=0, max_new_tokens=8, reasons=["furniture_repeat"],
                         min_pairs=1)  # an untrained model never repeats page furniture in 8 tokens
    result = DPOStage("dpo", _dpo("lora", pairs="mined", mining=picky)).run(
        tiny_artifact, pages[0], tmp_path / "skip", CONTEXT)
    assert result.artifact == tiny_artifact and "only 0 preference pairs" in result.skipped
    assert not (tmp_path / "skip" / "model").exists()
    picky.on_too_few = "fail"
    with pytest.raises(DataError, match="only 0 preference pairs"):
        DPOStage("dpo", _dpo("lora", pairs="mined", mining=picky)).run(tiny_artifact, pages[0], tmp_path / "f",
                                                                       CONTEXT)


def page_answer(page_set, page_id):
    return next(page.answer.to_json() for page in page_set if page.id == page_id)


@pytest.mark.slow
def test_an_interrupted_dpo_stage_resumes_on_its_saved_pairs_and_checkpoint(tiny_artifact, pages, tmp_path):
    """Resumed from step 2 with pairs=mined, it must not mine again: it trains on the pairs saved before the
    interruption and ends with exactly the uninterrupted run's LoRA weights."""
    import shutil

    from safetensors.torch import load_file

    context = StageContext(trainer=TrainerConfig(device="cpu", precision="fp32", logging_steps=1, checkpoint_every=2))
    steps = dict(max_steps=4, batch_size=4, learning_rate=1e-3)
    whole = tmp_path / "whole"
    DPOStage("dpo", DPOStageConfig(pairs="synthetic", optimization=OptimizationConfig(method="lora", **steps))).run(
        tiny_artifact, pages[0], whole, context)
    resumed = tmp_path / "resumed"
    (resumed / "trainer").mkdir(parents=True)
    for name in ("pairs.jsonl", "pairs_summary.json"):
        shutil.copy(whole / name, resumed / name)
    shutil.copytree(whole / "trainer" / "checkpoint-2", resumed / "trainer" / "checkpoint-2")
    mined = DPOStageConfig(pairs="mined", mining=SMALL_MINING, optimization=OptimizationConfig(method="lora", **steps))
    result = DPOStage("dpo", mined).run(tiny_artifact, pages[0], resumed, context)
    assert result.metrics["resumed_from_step"] == 2 and "mining" not in result.metrics
    assert load_pairs(resumed) == load_pairs(whole)
    before, after = (load_file(folder / "adapter" / "adapter_model.safetensors") for folder in (whole, resumed))
    assert before.keys() == after.keys() and all(torch.equal(before[name], after[name]) for name in before)


@pytest.mark.slow
def test_an_interrupted_dpo_stage_on_a_runs_pair_set_resumes_on_the_same_set_without_copying_it(tiny_artifact,
                                                                                                pages, tmp_path):
    """Given pairs a run loaded (data/stages/NAME/pairs, images at data.max_pixels) are read where they are, by the
    first attempt and by the resumed one, which ends with exactly the uninterrupted run's LoRA weights."""
    import shutil

    from safetensors.torch import load_file

    from dharma_train.data.pairs import load_pair_set

    given = save_pairs(loop_pairs(pages[0], "structured", seed=3)[:8], tmp_path / "given")
    pair_set = load_pair_set(given, tmp_path / "data" / "stages" / "dpo" / "pairs", max_pixels=20_000,
                             split="stages.dpo.pairs")
    context = StageContext(trainer=TrainerConfig(device="cpu", precision="fp32", logging_steps=1, checkpoint_every=2))
    config = DPOStageConfig(pairs=str(given), optimization=OptimizationConfig(method="lora", max_steps=4,
                                                                              batch_size=4, learning_rate=1e-3))
    whole = tmp_path / "whole"
    DPOStage("dpo", config, pair_set).run(tiny_artifact, pages[0], whole, context)
    resumed = tmp_path / "resumed"
    (resumed / "trainer").mkdir(parents=True)
    shutil.copy(whole / "pairs_summary.json", resumed / "pairs_summary.json")
    shutil.copytree(whole / "trainer" / "checkpoint-2", resumed / "trainer" / "checkpoint-2")
    result = DPOStage("dpo", config, pair_set).run(tiny_artifact, pages[0], resumed, context)
    assert result.metrics["resumed_from_step"] == 2 and result.metrics["pairs"] == 8
    for folder in (whole, resumed):
        assert not (folder / "pair_images").exists() and not (folder / "pairs.jsonl").exists()
        assert json.loads((folder / "pairs_summary.json").read_text())["source"] == str(given)
    before, after = (load_file(folder / "adapter" / "adapter_model.safetensors") for folder in (whole, resumed))
    assert before.keys() == after.keys() and all(torch.equal(before[name], after[name]) for name in before)


def test_mining_stops_where_evaluation_stops_when_that_is_sooner():
    """A smoke run's evaluation.max_new_tokens=16 once left mining generating 512 tokens per answer."""
    from dharma_train.stages.dpo import mining_within
    from dharma_train.stages.sft import SFTStageConfig

    config = DPOStageConfig(mining=MiningConfig(max_new_tokens=512))
    assert mining_within(config, 16).mining.max_new_tokens == 16
    assert mining_within(config, 16).mining.samples_per_page == config.mining.samples_per_page
    assert mining_within(config, 2048) is config, "a larger evaluation bound leaves mining's own"
    assert config.mining.max_new_tokens == 512, "the given config is not changed"
    assert mining_within(SFTStageConfig(), 16) == SFTStageConfig(), "a stage that mines nothing is left as it is"
