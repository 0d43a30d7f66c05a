"""SFT on the tiny model, LoRA and full: the saved outputs load with plain transformers and peft."""

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForImageTextToText

from dharma_train import SFTStage, SFTStageConfig, StageContext
from dharma_train.artifact import ModelArtifact
from dharma_train.models.loading import load_model
from dharma_train.run_paths import run_resolved
from dharma_train.training.config import OptimizationConfig, TrainerConfig

CONTEXT = StageContext(trainer=TrainerConfig(device="cpu", precision="fp32", logging_steps=1))


def _sft(method, save="merged", task="structured", steps=3, **extra):
    return SFTStageConfig(task=task, optimization=OptimizationConfig(
        method=method, save=save, max_steps=steps, batch_size=4, learning_rate=1e-3, **extra))


@pytest.mark.slow
def test_lora_saves_adapter_and_merged_model_that_load_without_dharma_train(tiny_artifact, pages, tmp_path):
    result = SFTStage("structured", _sft("lora")).run(tiny_artifact, pages[0], tmp_path, CONTEXT)
    assert result.artifact.path == str(tmp_path / "model") and not result.artifact.is_adapter
    assert result.metrics["train_loss"] > 0
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "model")
    base = AutoModelForImageTextToText.from_pretrained(tiny_artifact.path)
    adapted = PeftModel.from_pretrained(base, tmp_path / "adapter").merge_and_unload()
    for (name, a), (_, b) in zip(merged.state_dict().items(), adapted.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    record = run_resolved(json.loads((tmp_path / "stage.json").read_text()), tmp_path.parent)  # the run folder
    assert record["input"]["path"] == tiny_artifact.path and record["kind"] == "sft"


@pytest.mark.slow
def test_adapter_only_save_chains_through_the_loader(tiny_artifact, pages, tmp_path):
    first = SFTStage("a", _sft("lora", save="adapter")).run(tiny_artifact, pages[0], tmp_path / "a", CONTEXT)
    assert first.artifact.is_adapter and first.artifact.base == tiny_artifact
    assert not (tmp_path / "a" / "model").exists()
    second = SFTStage("b", _sft("lora", save="adapter")).run(first.artifact, pages[0], tmp_path / "b", CONTEXT)
    assert second.artifact.base == first.artifact
    model = load_model(second.artifact)  # base + adapter a merged, then adapter b merged
    assert not hasattr(model, "peft_config")


@pytest.mark.slow
def test_full_fine_tuning_with_frozen_vision_changes_only_the_language_side(tiny_artifact, pages, tmp_path):
    result = SFTStage("plain", _sft("full", task="plain", freeze_vision=True)).run(
        tiny_artifact, pages[0], tmp_path, CONTEXT)
    before = AutoModelForImageTextToText.from_pretrained(tiny_artifact.path).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(result.artifact.path).state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed, "training changed nothing"
    assert not any(".visual." in f".{name}" for name in changed), "the frozen vision tower moved"


def test_config_rejects_impossible_combinations():
    with pytest.raises(ValueError, match="save=adapter needs"):
        _sft("full", save="adapter")
    with pytest.raises(ValueError, match="task"):
        SFTStageConfig(task="markdown")


def test_stage_is_a_plain_importable_unit():
    stage = SFTStage("structured")
    assert stage.name == "structured" and stage.kind == "sft" and stage.config.optimization.method == "lora"
    assert isinstance(ModelArtifact(path="x"), ModelArtifact)


@pytest.mark.slow
def test_wandb_tracking_runs_offline_without_a_key(tiny_artifact, pages, tmp_path, monkeypatch):
    from dharma_train.reporting.tracking import TrackingConfig

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    context = StageContext(trainer=CONTEXT.trainer, tracking=TrackingConfig(backend="wandb"), run_name="t")
    SFTStage("structured", _sft("lora", steps=2)).run(tiny_artifact, pages[0], tmp_path, context)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs, "wandb should have written an offline run under the stage folder"
