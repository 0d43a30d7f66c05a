"""Speed-ups are configured in one place, mirrored in conf/trainer, and fall back cleanly off CUDA or without liger."""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dharma_train.config_files import config_dir
from dharma_train.models.loading import load_model
from dharma_train.training.arguments import performance_arguments, trainer_arguments
from dharma_train.training.config import OptimizationConfig, TrainerConfig
from dharma_train.training.performance import PerformanceConfig, speed_up
from dharma_train.training.performance.kernels import use_fused_kernels


def test_conf_trainer_auto_lists_exactly_the_dataclass_defaults():
    yaml = OmegaConf.load(Path(config_dir()) / "trainer" / "auto.yaml")
    defaults = OmegaConf.to_container(OmegaConf.structured(TrainerConfig))
    del defaults["hardware"]  # its own group, conf/hardware/ (tests/test_hardware.py)
    assert OmegaConf.to_container(yaml) == defaults


@pytest.mark.parametrize("option", ["auto", "cpu", "gpu"])
def test_every_trainer_option_sets_every_performance_field(option):
    from hydra import compose, initialize_config_dir

    from dharma_train.config_files import register_recipes

    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        composed = compose(config_name="config", overrides=[f"trainer={option}"])
    assert set(composed.trainer.performance) == set(asdict(PerformanceConfig()))


@pytest.mark.parametrize("option", ["cpu", "gpu"])
def test_trainer_options_state_only_what_differs_from_auto(option):
    """Each fact is spelled once: cpu.yaml and gpu.yaml are deltas on auto.yaml."""
    auto = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "trainer" / "auto.yaml"))
    delta = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "trainer" / f"{option}.yaml"))
    assert delta.pop("defaults") == ["auto", "_self_"]
    assert delta and all(delta[key] != auto[key] for key in delta), f"{option}.yaml repeats auto.yaml's values"


def test_bad_performance_value_names_its_key():
    from dharma_train.typed_config import typed
    from dharma_train.errors import ConfigError

    with pytest.raises(ConfigError, match="prefetch_batches"):
        typed("trainer", TrainerConfig, {"performance": {"prefetch_batches": 0}})


def test_on_cpu_every_speed_up_is_off_and_the_model_is_untouched(tiny_artifact):
    model = load_model(tiny_artifact)
    forwards = {name: module.forward for name, module in model.named_modules()}
    outcome = speed_up(model, PerformanceConfig(compile=True), "cpu")
    assert set(outcome) == {"padding_free", "fused_kernels"}  # compile comes after the recompute policy
    assert all(state.startswith("off (needs CUDA") for state in outcome.values())
    assert all(module.forward == forwards[name] for name, module in model.named_modules())


def test_without_liger_the_fused_kernels_are_skipped_and_the_rest_still_applies(tiny_artifact, monkeypatch):
    import dharma_train.training.performance.kernels as kernels

    monkeypatch.setattr(kernels.importlib.util, "find_spec", lambda name: None)
    model = load_model(tiny_artifact)
    outcome = speed_up(model, PerformanceConfig(), "cuda")
    assert outcome["padding_free"] == "on"
    assert outcome["fused_kernels"] == "off (needs CUDA and liger-kernel (pip install liger-kernel))"
    assert not any(hasattr(m, "_dharma_stock_forward") for m in model.modules() if "Norm" in type(m).__name__)


def test_fused_kernels_patch_every_norm_and_gated_mlp_once(tiny_artifact):
    model = load_model(tiny_artifact)
    text, vision = model.config.text_config, model.config.vision_config
    norms = 2 * text.num_hidden_layers + 1 + 2 * vision.depth + 1  # + the final norm and the merger's ln_q
    expected = sum(type(m).__name__ in ("Qwen2RMSNorm", "Qwen2_5_VLRMSNorm") for m in model.modules())
    assert expected >= norms - 1
    mlps = text.num_hidden_layers + vision.depth
    assert use_fused_kernels(model) == expected + mlps
    assert use_fused_kernels(model) == 0


def test_training_arguments_carry_optimizer_checkpointing_and_loader_settings():
    from dharma_train.training.arguments import checkpointing_arguments

    args = performance_arguments(PerformanceConfig(), "cuda", dataloader_workers=4)
    assert args["optim"] == "adamw_torch_fused"
    assert args["dataloader_persistent_workers"] and args["dataloader_prefetch_factor"] == 2
    every_2 = checkpointing_arguments("every_2")
    assert list(every_2.values()) == [True, {"every_n_layers": 2}]
    assert list(checkpointing_arguments("all").values()) == [True, None]
    assert list(checkpointing_arguments("keep_4").values()) == [True, None]  # ZeRO-3/FSDP2: every layer
    assert list(checkpointing_arguments("auto").values()) == [False, None]  # until the start-up probe sets it
    cpu = performance_arguments(PerformanceConfig(), "cpu", dataloader_workers=0)
    assert cpu == {}  # transformers' defaults: its own optimizer choice
    unfused = performance_arguments(PerformanceConfig(fused_optimizer=False), "cuda", 0)
    assert unfused == {"optim": "adamw_torch"}


def test_trl_configs_accept_the_arguments(tmp_path):
    from trl import DPOConfig, SFTConfig

    hardware = TrainerConfig(device="cpu", gradient_checkpointing=True, dataloader_workers=2,
                             performance=PerformanceConfig(recompute="every_3"))
    for config_class in (SFTConfig, DPOConfig):
        config = config_class(**trainer_arguments(OptimizationConfig(), hardware, str(tmp_path), [], "run"))
        assert config.dataloader_prefetch_factor == 2 and config.dataloader_persistent_workers
        assert not config.gradient_checkpointing, "one process: train_resumably sets the layers, the Trainer not"


def test_a_model_without_qwen_modules_reports_nothing_applied():
    import torch

    outcome = speed_up(torch.nn.Sequential(torch.nn.Linear(4, 4)), PerformanceConfig(), "cuda")
    assert outcome["padding_free"].startswith("off (no Qwen2.5-VL module")


def test_compile_applies_with_any_recompute_policy_and_auto_leaves_lora_eager(tiny_artifact):
    """Recomputed layers checkpoint inside their compiled graph (test_compiled_layers.py), so compile no longer waits
    for a policy without recomputation. Off a GPU, under a sharded engine or for a stage's own reason it stays off,
    saying why. auto compiles full fine-tuning only (compiled LoRA's losses left eager's on the GPU); on compiles
    LoRA too."""
    from peft import get_peft_model

    from dharma_train.training.config import LoraSettings
    from dharma_train.training.model_setup import lora_config
    from dharma_train.training.performance.apply import compile_repeated_layers

    def compiled(model):
        return [type(m).__name__ for m in model.modules() if getattr(m, "_compiled_call_impl", None) is not None]

    model = load_model(tiny_artifact)
    assert compile_repeated_layers(model, PerformanceConfig(compile="off"), "cuda", "off") is None
    assert compile_repeated_layers(model, PerformanceConfig(), "cpu", "off") == "off (needs CUDA)"
    assert compile_repeated_layers(model, PerformanceConfig(), "cuda", None).startswith("off (FSDP2")
    assert compile_repeated_layers(model, PerformanceConfig(), "cuda", "off", "a reason") == "off (a reason)"
    assert compiled(model) == []
    assert compile_repeated_layers(model, PerformanceConfig(), "cuda", "every_2") == "on"
    layers = compiled(model)  # compiled lazily: nothing runs until the first forward
    assert set(layers) == {"Qwen2_5_VLVisionBlock", "Qwen2_5_VLDecoderLayer"}  # vision block 0 recomputes: eager
    assert len(layers) == model.config.vision_config.depth + model.config.text_config.num_hidden_layers - 1

    lora = get_peft_model(load_model(tiny_artifact), lora_config(LoraSettings()))
    state = compile_repeated_layers(lora, PerformanceConfig(), "cuda", "off")
    assert state.startswith("off for LoRA under auto") and "trainer.performance.compile=on" in state
    assert compiled(lora) == []
    assert compile_repeated_layers(lora, PerformanceConfig(compile="on"), "cuda", "keep_4") == "on"
    assert compiled(lora)


@pytest.mark.parametrize("written, read", [(True, "on"), (False, "off"), ("auto", "auto"), ("on", "on")])
def test_compile_reads_yamls_booleans_as_on_and_off(written, read):
    assert PerformanceConfig(compile=written).compile == read


def test_a_bad_compile_value_names_its_key():
    with pytest.raises(ValueError, match="trainer.performance.compile must be auto, on or off"):
        PerformanceConfig(compile="sometimes")


@pytest.mark.parametrize("masters", ["optimizer", "model"])
def test_prepare_trainer_moves_the_master_weights_into_the_optimizer_only_where_asked(tiny_artifact, pages, tmp_path,
                                                                                     masters):
    """On this CPU, bf16 asked explicitly: the LoRA adapters peft made fp32 become bf16 and the Trainer will build
    its optimizer over fp32 copies; with the default, nothing changes. The CPU plans nothing and compiles nothing."""
    from trl import SFTConfig, SFTTrainer

    from dharma_train.data.conversation import sft_dataset
    from dharma_train.models.loading import load_processor
    from dharma_train.training.config import LoraSettings
    from dharma_train.training.model_setup import lora_config
    from dharma_train.training.performance.apply import prepare_trainer
    from dharma_train.training.performance.master_weights import MasterWeightsOptimizer

    settings = TrainerConfig(precision="bf16", performance=PerformanceConfig(master_weights=masters))
    trainer = SFTTrainer(model=load_model(tiny_artifact, dtype="bfloat16"),
                         processing_class=load_processor(tiny_artifact.path), peft_config=lora_config(LoraSettings()),
                         args=SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_length=None),
                         train_dataset=sft_dataset(pages[0], "structured"))
    prepared = prepare_trainer(trainer, settings, "stage")
    assert prepared == {"sampler": None, "recompute": {"policy": "off"}, "compile": "off (needs CUDA)"}
    adapters = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    if masters == "optimizer":
        assert adapters == {torch.bfloat16}
        assert isinstance(trainer.create_optimizer(), MasterWeightsOptimizer)
    else:
        assert adapters == {torch.float32} and trainer.optimizer_cls_and_kwargs is None
