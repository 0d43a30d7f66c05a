import pytest

from dharma_train.training.arguments import trainer_arguments
from dharma_train.training.config import OptimizationConfig, TrainerConfig
from dharma_train.training.model_setup import freeze_vision_tower


def test_full_fine_tuning_keeps_fp32_master_weights_under_bf16():
    config = TrainerConfig(precision="bf16")
    assert config.model_dtype() == "bfloat16"
    assert config.training_dtype("full") == "float32"
    assert config.training_dtype("lora") == "bfloat16"


def test_master_weights_in_the_optimizer_make_full_fine_tuning_bf16_only_where_they_apply():
    """bf16 in one process or DDP: the parameters are bf16, the fp32 copies the optimizer's. An fp32 run, and
    FSDP2 / ZeRO-3 (their own fp32 shards), keep fp32 parameters."""
    from dharma_train.training.hardware import HardwareConfig
    from dharma_train.training.performance import PerformanceConfig

    optimizer = PerformanceConfig(master_weights="optimizer")
    kept = TrainerConfig(precision="bf16", performance=optimizer)
    assert kept.masters_in_optimizer() and kept.training_dtype("full") == kept.training_dtype("lora") == "bfloat16"
    assert TrainerConfig(precision="bf16", performance=optimizer,
                         hardware=HardwareConfig(strategy="ddp")).masters_in_optimizer()
    for elsewhere in (TrainerConfig(device="cpu", performance=optimizer),
                      TrainerConfig(precision="bf16", performance=optimizer, hardware=HardwareConfig(strategy="fsdp2")),
                      TrainerConfig(precision="bf16")):
        assert not elsewhere.masters_in_optimizer()
        assert elsewhere.training_dtype("full") == "float32"
    with pytest.raises(ValueError, match="master_weights must be one of"):
        PerformanceConfig(master_weights="fp32")


def test_cpu_defaults_to_fp32_and_refuses_bf16():
    assert TrainerConfig(device="cpu").resolved_precision() == "fp32"
    with pytest.raises(ValueError, match="bf16"):
        TrainerConfig(device="cpu", precision="bf16")


def test_loader_workers_default_to_none_on_a_cpu_and_an_explicit_count_is_kept():
    assert TrainerConfig(device="cpu").resolved_workers() == 0
    assert TrainerConfig(device="cpu", dataloader_workers=2).resolved_workers() == 2
    args = trainer_arguments(OptimizationConfig(), TrainerConfig(device="cpu", dataloader_workers=3), "out", [], "r/s")
    assert args["dataloader_num_workers"] == 3 and args["dataloader_persistent_workers"]


def test_trainer_arguments_never_truncate_and_checkpoint_on_the_configured_schedule():
    args = trainer_arguments(OptimizationConfig(batch_size=3, gradient_accumulation=2),
                             TrainerConfig(device="cpu", checkpoint_every=25, keep_checkpoints=3), "out", [], "run/s")
    assert args["max_length"] is None
    assert (args["save_strategy"], args["save_steps"], args["save_total_limit"]) == ("steps", 25, 3)
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (3, 2)
    assert args["use_cpu"] and not args["bf16"]
    off = trainer_arguments(OptimizationConfig(), TrainerConfig(device="cpu", checkpoint_every=0), "out", [], "r/s")
    assert off["save_strategy"] == "no"


@pytest.mark.parametrize("values, message", [
    ({"resume": "sometimes"}, "trainer.resume must be one of"),
    ({"on_nonfinite": "ignore"}, "trainer.on_nonfinite must be one of"),
    ({"checkpoint_every": -1}, "checkpoint_every must be >= 0"),
    ({"keep_checkpoints": 0}, "keep_checkpoints >= 1"),
    ({"memory_budget_gb": 0.0}, "memory_budget_gb must be > 0"),
    ({"lock_wait_seconds": -1.0}, "lock_wait_seconds must be >= 0"),
    ({"dataloader_workers": -1}, "dataloader_workers must be >= 0"),
])
def test_long_job_settings_are_checked(values, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig(**values)


def test_freeze_vision_tower_freezes_exactly_the_visual_parameters(tiny_artifact):
    from dharma_train.models.loading import load_model

    model = load_model(tiny_artifact)
    frozen = freeze_vision_tower(model)
    visual = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    assert frozen == visual > 0
    assert all(p.requires_grad for n, p in model.named_parameters() if ".visual." not in f".{n}")
