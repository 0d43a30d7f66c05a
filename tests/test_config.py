"""Every recipe composes offline and validates; bad values are reported with their key before any model loads."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dharma_train.config import validate
from dharma_train.config_files import config_dir, recipe_names, register_recipes
from dharma_train.errors import ConfigError
from dharma_train.stages import STAGE_CONFIGS


def _compose(*overrides):
    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_composes_and_validates(recipe):
    config = validate(_compose(f"recipe={recipe}", "output_dir=/tmp/x"))
    assert config.name == recipe
    assert config.stages, "a recipe names at least one stage"


def test_tiny_recipe_is_the_ladder_in_order():
    config = validate(_compose("output_dir=/tmp/x"))
    assert list(config.stages) == ["general_ocr", "structured", "dpo", "quantize", "export"]
    assert [s.kind for s in config.stages.values()] == ["sft", "sft", "dpo", "quantize", "export"]
    assert [s.task for s in list(config.stages.values())[:4]] == ["general", "structured", "structured", "structured"]
    assert config.stages["general_ocr"].data == "general", "the general-OCR rung trains on its own generated pages"
    assert config.stages["quantize"].scheme == "awq_w4a16"


def test_nanonets_recipe_has_the_real_settings():
    config = validate(_compose("recipe=nanonets_3b", "output_dir=/tmp/x"))
    assert config.model.path == "nanonets/Nanonets-OCR2-3B"
    assert list(config.stages)[-2:] == ["quantize", "export"] and config.stages["quantize"].scheme == "awq_w4a16"
    assert config.trainer.precision == "bf16" or config.trainer.device == "cuda"


@pytest.mark.parametrize("override, key", [
    ("stages.structured.optimization.max_steps=abc", "stages.structured.optimization.max_steps"),
    ("evaluation.batch_size=many", "evaluation.batch_size"),
    ("stages.structured.optimization.method=magic", "stages.structured"),
    ("stages.dpo.beta=-1", "stages.dpo"),
])
def test_bad_values_name_their_key(override, key):
    cfg = _compose("output_dir=/tmp/x", override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_unknown_keys_are_rejected_by_composition_and_validation():
    with pytest.raises(Exception, match="foo"):
        _compose("foo=1")
    values = OmegaConf.to_container(_compose("output_dir=/tmp/x"))
    values["stages"]["structured"]["optimization"]["lerning_rate"] = 1.0
    with pytest.raises(ConfigError, match=r"stages\.structured\.optimization\.lerning_rate"):
        validate(values)


def test_stage_yaml_lists_exactly_the_dataclass_defaults():
    for kind, schema in STAGE_CONFIGS.items():
        yaml = OmegaConf.load(Path(config_dir()) / "stage" / f"{kind}.yaml")
        assert yaml == OmegaConf.structured(schema), f"conf/stage/{kind}.yaml drifted from {schema.__name__}"


@pytest.mark.parametrize("change, message", [
    (lambda v: v.update(ouput_dir="x"), "unknown config key 'ouput_dir' (did you mean output_dir?); known top-level"),
    (lambda v: v["stages"].update(strucured={"optimization": {"max_steps": 3}}),
     "config key 'stages.strucured' is not a stage of this recipe (no kind; its stages: general_ocr, structured, dpo, "
     "grpo, quantize, export) (did you mean stages.structured?); a new stage needs stages.strucured.kind"),
    (lambda v: v["stages"]["structured"]["optimization"].update(lerning_rate=1.0),
     "(did you mean stages.structured.optimization.learning_rate?)"),
    (lambda v: v["stages"]["dpo"].update(kind="dp"), "got 'dp' (did you mean dpo?)"),
    (lambda v: v["trainer"]["performance"].update(lora_4bit=True),
     "trainer.performance.lora_4bit=true applies to LoRA stages only, and stages.general_ocr, stages.structured, "
     "stages.dpo fine-tune all weights (optimization.method=full); set their optimization.method=lora"),
])
def test_refusals_say_what_was_meant(change, message):
    values = OmegaConf.to_container(_compose("output_dir=/tmp/x"), resolve=True)
    change(values)
    with pytest.raises(ConfigError) as raised:
        validate(values)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_lora_4bit_with_lora_stages_only_validates():
    overrides = [f"stages.{name}.optimization.method=lora" for name in ("general_ocr", "structured", "dpo")]
    config = validate(_compose("output_dir=/tmp/x", "trainer.performance.lora_4bit=true", *overrides))
    assert config.trainer.performance.lora_4bit


def test_a_recipe_in_the_wrong_order_stops_at_validation():
    """Checked on the composed config, before any page is generated or model loaded."""
    from dharma_train.errors import ConfigError

    with pytest.raises(ConfigError, match="stage export .export. must be the last stage: .* structured_again comes"):
        validate(_compose("recipe=tiny", "output_dir=/tmp/x", "+stages.structured_again.kind=sft"))


def test_a_null_stage_in_a_recipe_file_or_an_override_removes_the_inherited_stage(tmp_path):
    """`quantize: null` once failed as 'not a stage of this recipe (no kind ...)'."""
    from dharma_train.cli.compose import compose_config, split_words

    recipe = tmp_path / "no_quantize.yaml"
    recipe.write_text("defaults:\n  - /recipe@_here_: tiny\n  - _self_\nstages:\n  quantize: null\n")
    overrides, _ = split_words([str(recipe), "output_dir=/tmp/x"])
    assert list(validate(compose_config(overrides)).stages) == ["general_ocr", "structured", "dpo", "export"]
    config = validate(compose_config(["output_dir=/tmp/x", "stages.dpo=null", "stages.quantize=null"]))
    assert list(config.stages) == ["general_ocr", "structured", "export"]
    ablation = validate(compose_config(["recipe=tiny_ablation", "output_dir=/tmp/x", "stages.dpo=null"]))
    assert list(ablation.stages) == ["general_ocr", "structured", "quantize", "export"]
    ablation = validate(compose_config(["recipe=tiny_ablation", "output_dir=/tmp/x", "stages.quantize=null"]))
    assert list(ablation.stages) == ["general_ocr", "structured", "dpo", "export"], "a base may skip a removed stage"
    with pytest.raises(ConfigError, match="name at least one stage"):
        validate(compose_config(["output_dir=/tmp/x", *(f"stages.{name}=null" for name in config.stages),
                                 "stages.dpo=null", "stages.quantize=null"]))


def test_a_run_mines_no_further_than_it_evaluates():
    from dharma_train.cli.compose import compose_config

    def mining_bound(*overrides):
        return validate(compose_config(["output_dir=/tmp/x", *overrides])).stages["dpo"].mining.max_new_tokens

    assert mining_bound("evaluation.max_new_tokens=16") == 16, "a smoke run's lower bound bounds mining too"
    assert mining_bound("evaluation.max_new_tokens=4096") == 512, "mining's own bound when it is the smaller"
    assert mining_bound("recipe=nanonets_3b") == 2048
