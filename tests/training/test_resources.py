"""Disk and memory: refused before anything is written or loaded, with the knobs that help; CUDA OOM explained."""

import shutil

import pytest
import torch

from dharma_train.errors import ResourceError
from dharma_train.stage import StageContext
from dharma_train.stages import DPOStageConfig, SFTStageConfig
from dharma_train.training.config import OptimizationConfig, TrainerConfig
from dharma_train.training.resources import (
    check_free_disk,
    check_training_memory,
    explain_out_of_memory,
    training_knobs,
    training_memory_bytes,
)


def test_a_save_that_cannot_fit_is_refused_before_writing(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    check_free_disk(tmp_path / "not" / "yet", needed_bytes=1024, what="saving x")
    with pytest.raises(ResourceError, match=r"saving model needs about .* GB in .* free some space"):
        check_free_disk(tmp_path / "model", needed_bytes=2 * free, what="saving model")


def test_cuda_out_of_memory_names_the_knobs():
    context = StageContext(trainer=TrainerConfig(gradient_checkpointing=False))
    config = SFTStageConfig(optimization=OptimizationConfig(method="full", batch_size=8))
    with pytest.raises(ResourceError) as error:
        with explain_out_of_memory("in stage structured", training_knobs("structured", config.optimization, None, context)):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    message = str(error.value)
    assert message.startswith("CUDA ran out of memory in stage structured (CUDA out of memory. Tried to allocate")
    for knob in ("stages.structured.optimization.batch_size (now 8", "gradient_accumulation",
                 "model.max_pixels, the pixel budget", "trainer.performance.recompute=all (now off)",
                 "stages.structured.optimization.method=lora"):
        assert knob in message
    from dharma_train.stages import mining_batch_of, optimization_of

    dpo = DPOStageConfig()
    mined = training_knobs("dpo", optimization_of(dpo), mining_batch_of(dpo), context)
    assert any("stages.dpo.mining.batch_size" in knob for knob in mined)


def test_memory_floor_per_parameter():
    billion = 10**9
    assert training_memory_bytes(7 * billion, 0, "full", False, "float32", "sft") == 7 * billion * 16
    assert training_memory_bytes(7 * billion, 1 * billion, "full", True, "float32", "sft") == \
        7 * billion * 4 + 6 * billion * 12
    assert training_memory_bytes(7 * billion, 0, "full", False, "float32", "dpo") == 7 * billion * 20
    assert training_memory_bytes(7 * billion, 0, "lora", True, "bfloat16", "sft") == 7 * billion * 2
    # bf16 weights with the fp32 copies in the optimizer: 2 a weight, and 2 + 4 + 8 a trained one
    assert training_memory_bytes(7 * billion, 1 * billion, "full", True, "bfloat16", "sft") == \
        7 * billion * 2 + 6 * billion * 14


def test_checkpoints_and_optimizer_state_count_the_fp32_copies(tiny_artifact):
    from dharma_train.models.loading import load_model
    from dharma_train.training.resources import checkpoint_bytes, optimizer_state_bytes

    model = load_model(tiny_artifact, dtype="bfloat16")
    trained = sum(p.numel() for p in model.parameters())
    assert optimizer_state_bytes(model) == trained * 4  # two bf16 moments
    assert optimizer_state_bytes(model, masters_in_optimizer=True) == trained * 12  # fp32 copy and moments
    assert checkpoint_bytes(model, masters_in_optimizer=True) == trained * (2 + 12)


@pytest.fixture(scope="module")
def seven_b_config(tmp_path_factory):
    """Qwen2.5-VL-7B's shape as a config.json alone: no weights anywhere."""
    from transformers import Qwen2_5_VLConfig

    folder = tmp_path_factory.mktemp("qwen7b")
    Qwen2_5_VLConfig(text_config=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                      num_attention_heads=28, num_key_value_heads=4, vocab_size=152064),
                     vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                        out_hidden_size=3584)).save_pretrained(folder)
    return str(folder)


def test_full_fine_tuning_of_a_7b_model_in_24_gb_is_refused_before_any_weights_load(seven_b_config):
    from dharma_train.config import RunConfig
    from dharma_train.data.config import DataConfig
    from dharma_train.models.config import ModelConfig
    from dharma_train.run import execute

    stages = {"structured": SFTStageConfig(optimization=OptimizationConfig(method="full", freeze_vision=False))}
    config = RunConfig(name="big", output_dir="/nonexistent/run", model=ModelConfig(path=seven_b_config),
                       data=DataConfig(), stages=stages,
                       trainer=TrainerConfig(device="cpu", memory_budget_gb=24))
    with pytest.raises(ResourceError, match=r"stage structured: full fine-tuning of .* \(8\.29 B parameters\) needs at "
                                            r"least 124 GB .* budget is 24 GB .*optimization.method=lora"):
        execute(config)
    lora = {"structured": ("sft", OptimizationConfig(method="lora"))}
    check_training_memory(seven_b_config, lora, TrainerConfig(device="cuda", precision="bf16", memory_budget_gb=24))


def test_no_budget_on_a_cpu_means_no_check():
    check_training_memory("/no/model/needed", {"s": ("sft", OptimizationConfig())}, TrainerConfig(device="cpu"))
