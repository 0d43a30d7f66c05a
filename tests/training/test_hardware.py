"""The `hardware` group: strategies compose, are checked at run start, and become TRL's FSDP2 / DeepSpeed arguments."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dharma_train.config import validate
from dharma_train.config_files import config_dir, register_recipes
from dharma_train.errors import ConfigError
from dharma_train.training.arguments import trainer_arguments
from dharma_train.training.config import OptimizationConfig, TrainerConfig
from dharma_train.training.hardware import HardwareConfig, zero3_config


def _compose(*overrides):
    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=["output_dir=/tmp/x", *overrides]))


@pytest.mark.parametrize("strategy", ["single", "ddp", "fsdp2", "zero3"])
def test_each_hardware_option_composes_into_the_trainer_config(strategy):
    config = _compose(f"hardware={strategy}")
    assert config.trainer.hardware.strategy == strategy
    assert config.trainer.device == "cpu", "the recipe's trainer group is untouched"


def test_hardware_yaml_lists_the_dataclass_defaults():
    for path in sorted(Path(config_dir(), "hardware").glob("*.yaml")):
        yaml = OmegaConf.load(path)
        expected = OmegaConf.structured(HardwareConfig(strategy=path.stem))
        assert OmegaConf.merge(expected, yaml) == expected, f"{path} drifted from HardwareConfig's defaults"


def test_default_is_one_process_and_the_arguments_are_unchanged():
    args = trainer_arguments(OptimizationConfig(batch_size=4), TrainerConfig(device="cpu"), "/tmp/o", [], "r")
    assert args["per_device_train_batch_size"] == 4
    assert not {"fsdp", "fsdp_config", "deepspeed"} & set(args)


def test_fsdp2_becomes_trl_arguments_with_fsdps_own_activation_checkpointing():
    from trl import SFTConfig

    hardware = TrainerConfig(device="cpu", gradient_checkpointing=True,
                             hardware=HardwareConfig(strategy="fsdp2"))
    args = SFTConfig(**trainer_arguments(OptimizationConfig(), hardware, "/tmp/o", [], "r"))
    assert args.fsdp_plugin_args["fsdp_version"] == 2
    assert args.fsdp_plugin_args["activation_checkpointing"] is True
    assert args.fsdp_plugin_args["state_dict_type"] == "FULL_STATE_DICT"
    assert args.fsdp_plugin_args["reshard_after_forward"] is True
    assert not args.gradient_checkpointing, "the Trainer's own checkpointing would add an all-gather under FSDP"


def test_zero3_becomes_a_deepspeed_config_that_gathers_weights_on_save():
    hardware = TrainerConfig(device="cpu", hardware=HardwareConfig(strategy="zero3"))
    deepspeed = trainer_arguments(OptimizationConfig(), hardware, "/tmp/o", [], "r")["deepspeed"]
    assert deepspeed == zero3_config(hardware.hardware.zero3)
    assert deepspeed["zero_optimization"]["stage"] == 3
    assert deepspeed["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_batch_size_is_global_and_split_over_the_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = trainer_arguments(OptimizationConfig(batch_size=8), TrainerConfig(device="cpu"), "/tmp/o", [], "r")
    assert args["per_device_train_batch_size"] == 4


@pytest.mark.parametrize("strategy, device, world, launched, message", [
    ("single", "cpu", 2, True, "trainer.hardware.strategy=single but the run was launched with 2 processes"),
    ("ddp", "cpu", 1, False, "trainer.hardware.strategy=ddp needs a multi-process launch"),
    ("fsdp2", "cpu", 2, True, "trainer.hardware.strategy=fsdp2 runs on CUDA GPUs only"),
    ("zero3", "cpu", 2, True, "trainer.hardware.strategy=zero3"),
])
def test_impossible_launches_stop_with_the_key(strategy, device, world, launched, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        HardwareConfig(strategy=strategy).check(device, world, launched, {})


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="DeepSpeed is installed here")
def test_zero3_without_deepspeed_says_how_to_install_it():
    with pytest.raises(ConfigError, match="needs DeepSpeed: `pip install deepspeed`"):
        HardwareConfig(strategy="zero3").check("cuda", 2, True, {})


def test_a_global_batch_that_does_not_divide_names_the_stage():
    with pytest.raises(ConfigError, match=r"stages\.dpo\.optimization\.batch_size=5 is the global batch"):
        HardwareConfig(strategy="ddp").check("cpu", 2, True, {"stages.sft": 4, "stages.dpo": 5})
    HardwareConfig(strategy="ddp").check("cpu", 2, True, {"stages.sft": 4})


def test_unknown_strategy_is_refused_at_validation():
    with pytest.raises(ConfigError, match="hardware.strategy must be one of"):
        _compose("trainer.hardware.strategy=tp")


def test_cli_without_a_launcher_stops_before_any_work(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for name in ("WORLD_SIZE", "RANK"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "dharma_train", "hardware=ddp", f"output_dir={tmp_path / 'run'}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "trainer.hardware.strategy=ddp needs a multi-process launch" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run" / "data").exists()


def test_fsdp2_under_bf16_computes_in_bf16_and_keeps_outputs_and_gradient_reduction_in_fp32(monkeypatch, tmp_path):
    """accelerate's default FSDP2 policy casts every output to bf16, which broke DPO's log-prob sums on the GPU;
    the policy build_arguments sets is the one accelerate's own plugin keeps once the trainer asks for bf16."""
    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin
    from trl import DPOConfig

    from dharma_train.training.arguments import build_arguments

    monkeypatch.setattr(TrainerConfig, "resolved_precision", lambda self: "bf16")  # a bf16 GPU, on this CPU
    hardware = TrainerConfig(device="cpu", hardware=HardwareConfig(strategy="fsdp2"))
    args = build_arguments(DPOConfig, OptimizationConfig(), hardware, str(tmp_path), [], "r", beta=0.1)
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    plugin.set_mixed_precision("bf16")  # what accelerate's state does with the Trainer's bf16=True
    policy = plugin.mixed_precision_policy
    assert (policy.param_dtype, policy.reduce_dtype, policy.output_dtype) == (torch.bfloat16, torch.float32, None)
    assert args.to_json_string()  # the arguments still serialize (wandb, trainer state)
    assert HardwareConfig(strategy="fsdp2").fsdp2_precision("fp32") is None
    assert all(HardwareConfig(strategy=s).fsdp2_precision("bf16") is None for s in ("single", "ddp", "zero3"))


FSDP2_LOG_PROBS = """
import os, sys, torch, torch.distributed as dist
from accelerate.utils import FullyShardedDataParallelPlugin
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from dharma_train.training.hardware import HardwareConfig
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1], RANK="0", WORLD_SIZE="1")
dist.init_process_group("gloo")
mesh = init_device_mesh("cpu", (1,))

class Head(torch.nn.Module):  # per-token log-probs computed in fp32, as TRL's fused LM head returns them
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 4000)
    def forward(self, hidden, targets):
        return torch.log_softmax(self.proj(hidden).float(), -1).gather(-1, targets[..., None])[..., 0]

torch.manual_seed(0)
hidden, targets = torch.randn(1, 3000, 16), torch.randint(0, 4000, (1, 3000))
exact = Head()
sums = {"exact": float(exact(hidden, targets).sum())}
for name, policy in (("accelerate", None), ("ours", HardwareConfig(strategy="fsdp2").fsdp2_precision("bf16"))):
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, mixed_precision_policy=policy)
    plugin.set_mixed_precision("bf16")
    head = Head()
    head.load_state_dict(exact.state_dict())
    fully_shard(head, mesh=mesh, mp_policy=plugin.mixed_precision_policy)
    out = head(hidden, targets)
    sums[name] = float(out.sum())
    sums[name + "_dtype"] = str(out.dtype)
print(sums)
dist.destroy_process_group()
"""


def test_fsdp2_log_prob_sums_stay_exact_to_a_fraction_of_a_nat_with_our_policy_and_not_with_accelerates():
    """The DPO mismatch in miniature, on the real fully_shard (gloo, world size 1): a sequence's log-prob sum."""
    import ast
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    done = subprocess.run([sys.executable, "-c", FSDP2_LOG_PROBS, port], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    sums = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert sums["ours_dtype"] == "torch.float32" and abs(sums["ours"] - sums["exact"]) < 0.1
    # accelerate 1.15 (the GPU image's) casts every sharded module's output to bf16 and loses whole nats (DPO's
    # margins are a few); 1.16 leaves outputs as computed (output_dtype=None), as our policy does on either version.
    if sums["accelerate_dtype"] == "torch.bfloat16":
        assert abs(sums["accelerate"] - sums["exact"]) > 1.0
        assert abs(sums["ours"] - sums["exact"]) < 0.1 * abs(sums["accelerate"] - sums["exact"])
    else:
        assert sums["accelerate_dtype"] == "torch.float32" and abs(sums["accelerate"] - sums["exact"]) < 0.1
