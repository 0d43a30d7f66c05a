"""QLoRA: LoRA over a 4-bit NF4 base through the real SFT stage, saved as full-precision merged weights."""

import importlib.util

import pytest
import torch
from transformers import AutoModelForImageTextToText

from dharma_train import ConfigError, SFTStage, SFTStageConfig, StageContext
from dharma_train.training.config import OptimizationConfig, TrainerConfig
from dharma_train.training.performance import PerformanceConfig, quantized_base


def test_only_lora_stages_quantize_and_without_bitsandbytes_it_is_refused(monkeypatch):
    import dharma_train.training.performance.apply as apply

    assert not quantized_base("lora", PerformanceConfig())
    assert not quantized_base("full", PerformanceConfig(lora_4bit=True))
    monkeypatch.setattr(apply.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs bitsandbytes, which is not installed: pip install bitsandbytes"):
        quantized_base("lora", PerformanceConfig(lora_4bit=True))  # never a silent full-precision base


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")
def test_qlora_stage_trains_on_a_4bit_base_and_saves_full_precision_merged_weights(tiny_artifact, pages, tmp_path):
    from peft import PeftModel

    context = StageContext(trainer=TrainerConfig(device="cpu", precision="fp32", logging_steps=1,
                                                 performance=PerformanceConfig(lora_4bit=True)))
    # 3 steps: with warm-up and a cosine schedule, 2 steps would both run at learning rate 0
    config = SFTStageConfig(optimization=OptimizationConfig(method="lora", max_steps=3, batch_size=2,
                                                            learning_rate=1e-3))
    result = SFTStage("qlora", config).run(tiny_artifact, pages[0], tmp_path, context)
    assert result.metrics["train_loss"] > 0
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "model")
    assert getattr(merged.config, "quantization_config", None) is None
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    base = AutoModelForImageTextToText.from_pretrained(tiny_artifact.path)
    changed = [n for (n, a), (_, b) in zip(base.state_dict().items(), merged.state_dict().items())
               if not torch.equal(a, b)]
    assert changed and all("language_model" in n for n in changed)
    adapted = PeftModel.from_pretrained(base, tmp_path / "adapter").merge_and_unload()  # merges into `base`
    for (name, a), (_, b) in zip(merged.state_dict().items(), adapted.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
