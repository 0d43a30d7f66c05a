"""DPO on the tiny model: LoRA (base as implicit reference) and full fine-tuning (explicit frozen reference)."""

import pytest
import torch
from transformers import AutoModelForImageTextToText

from dharma_train import DPOStage, DPOStageConfig, StageContext
from dharma_train.data.pairs import load_pairs, loop_pairs, save_pairs
from dharma_train.errors import DataError
from dharma_train.training import OptimizationConfig, TrainerConfig

CONTEXT = StageContext(trainer=TrainerConfig(device="cpu", precision="fp32", logging_steps=1))


def _dpo(method, **extra):
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
