"""The GRPO stage: its config refused at start, the recipes' switch, a LoRA run against the adapters-off reference,
and a resumed run whose reward record covers every step."""

import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForImageTextToText

from dharma_train import GRPOStage, GRPOStageConfig, StageContext
from dharma_train.config import validate
from dharma_train.config_files import config_dir, register_recipes
from dharma_train.errors import ConfigError
from dharma_train.preflight import check_machine
from dharma_train.stages.grpo import reward_logging_steps, sampling_engine
from dharma_train.stages.grpo_rewards import TERMS
from dharma_train.training.config import TrainerConfig
from dharma_train.training.hardware import HardwareConfig


@pytest.mark.parametrize("values, message", [
    ({"num_generations": 1}, "num_generations must be >= 2"),
    ({"num_generations": 3}, "must be a multiple of num_generations (3)"),
    ({"beta": 0.04, "optimization": {"method": "full"}}, "beta=0.04 needs optimization.method=lora"),
    ({"temperature": 0.0}, "temperature > 0"),
    ({"loss_type": "ppo"}, "loss_type must be one of"),
    ({"scale_rewards": "std"}, "scale_rewards must be one of"),
    ({"rewards": {"length": "long"}}, "stages.grpo.rewards.length"),
    ({"engine": "vllm"}, "engine must be one of"),
])
def test_bad_values_are_refused_in_one_line_naming_the_key(values, message):
    with pytest.raises(ConfigError) as error:
        GRPOStage("grpo", values)
    assert message in str(error.value) and "stages.grpo" in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def _recipe(*overrides: str):
    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=["recipe=tiny_random", "output_dir=/tmp/x", *overrides]))


def test_the_recipes_rung_is_off_until_switched_on_after_or_in_place_of_dpo():
    assert "grpo" not in _recipe().stages
    after = _recipe("stages.grpo.enabled=true")
    assert list(after.stages) == ["general_ocr", "structured", "dpo", "grpo", "quantize", "export"]
    assert after.stages["grpo"].max_new_tokens == after.evaluation.max_new_tokens == 160  # samples what is scored
    instead = _recipe("stages.grpo.enabled=true", "stages.dpo=null")
    assert list(instead.stages) == ["general_ocr", "structured", "grpo", "quantize", "export"]
    with pytest.raises(ConfigError, match="stages.grpo"):  # a rung left off is still checked
        _recipe("stages.grpo.num_generations=1")


def test_auto_samples_through_the_continuous_engine_on_a_whole_model_on_cuda_and_sharded_runs_cannot_ask_for_it():
    auto, continuous = GRPOStage("grpo", {}).config, GRPOStage("grpo", {"engine": "continuous"}).config
    sharded = TrainerConfig(device="cuda", hardware=HardwareConfig(strategy="fsdp2"))
    assert sampling_engine(auto, TrainerConfig(device="cuda")) == "continuous"
    assert sampling_engine(auto, TrainerConfig(device="cpu")) == "generate"
    assert sampling_engine(continuous, TrainerConfig(device="cpu")) == "continuous"
    assert sampling_engine(auto, sharded) == "generate"
    with pytest.raises(ConfigError, match="engine=continuous is not verified with sharded"):
        sampling_engine(continuous, sharded)
    sharded_run = _recipe("stages.grpo.enabled=true", "stages.grpo.engine=continuous", "hardware=fsdp2")
    with pytest.raises(ConfigError, match="engine=continuous"):
        check_machine(sharded_run)  # refused in the run's pre-flight, before any page or model


def _context(**trainer):
    return StageContext(trainer=TrainerConfig(**{"device": "cpu", "precision": "fp32", "logging_steps": 1, **trainer}))


def _config(method: str, **values) -> GRPOStageConfig:
    return GRPOStage("grpo", {"num_generations": 4, "max_new_tokens": 12, **values,
                              "optimization": {"method": method, "freeze_vision": False, "max_steps": 2,
                                               "batch_size": 8, "learning_rate": 1e-3, "weight_decay": 0.0}}).config


def _weights(path) -> dict:
    return AutoModelForImageTextToText.from_pretrained(path).state_dict()


@pytest.mark.slow
def test_lora_with_a_kl_term_trains_against_the_adapters_off_reference_and_records_the_rewards(tiny_artifact, pages,
                                                                                                 tmp_path):
    config = _config("lora", beta=0.04, engine="continuous")  # sampled by the engine through the adapters
    # the CPU trainer's logging_steps of 20 would log a 2-step stage once: the reward curves log every step
    result = GRPOStage("grpo", config).run(tiny_artifact, pages[0], tmp_path, _context(logging_steps=20))
    record = result.metrics["grpo"]
    assert record["engine"] == "continuous"
    assert (record["answers"], record["groups"]) == (16, 4)  # 2 steps x 2 pages x 4 answers
    assert record["curves"]["step"] == [1, 2] and set(TERMS) < set(record["curves"])
    assert record["hit_token_limit"] == 16  # the untrained model never ends within 12 tokens
    assert all(value == -1.0 for value in record["curves"]["length"])
    before, after = _weights(tiny_artifact.path), _weights(result.artifact.path)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_groups_whose_answers_all_score_the_same_are_counted_as_skipped_and_move_nothing(tiny_artifact, pages,
                                                                                        tmp_path):
    only_length = {"json_valid": 0, "schema_valid": 0, "accuracy": 0, "no_loop": 0, "length": 1}
    config = _config("full", engine="continuous", rewards=only_length)  # every answer runs into the bound: -1
    result = GRPOStage("grpo", config).run(tiny_artifact, pages[0], tmp_path, _context())
    record = result.metrics["grpo"]
    assert record["hit_token_limit"] == record["answers"] == 16
    assert record["zero_variance_groups"] == record["groups"] == 4
    before, after = _weights(tiny_artifact.path), _weights(result.artifact.path)
    assert all(torch.equal(before[name], after[name]) for name in before)  # zero advantage, zero gradient


@pytest.mark.slow
def test_an_interrupted_stage_resumes_from_its_checkpoint_and_its_record_covers_every_step(tiny_artifact, pages,
                                                                                          tmp_path):
    config, context = _config("full", engine="generate"), _context(checkpoint_every=1)  # TRL's own sampling
    GRPOStage("grpo", config).run(tiny_artifact, pages[0], tmp_path, context)
    # the last step saves the model, not a checkpoint: step 1's is the one an interruption in step 2 leaves
    assert [path.name for path in (tmp_path / "trainer").glob("checkpoint-*")] == ["checkpoint-1"]
    shutil.rmtree(tmp_path / "model")
    result = GRPOStage("grpo", config).run(tiny_artifact, pages[0], tmp_path, context)
    assert result.metrics["resumed_from_step"] == 1
    record = result.metrics["grpo"]
    assert record["curves"]["step"] == [1, 2] and record["groups"] == 4  # step 1's logs came back with its state


@pytest.mark.parametrize("logging_steps, max_steps, expected", [(20, 20, 1), (20, 400, 20), (10, 1000, 10),
                                                                   (10, 60, 3), (5, -1, 5), (1, 2, 1)])
def test_the_reward_curves_get_about_20_points_and_never_fewer_logs_than_the_trainer_asks(logging_steps, max_steps,
                                                                                          expected):
    assert reward_logging_steps(logging_steps, max_steps) == expected
