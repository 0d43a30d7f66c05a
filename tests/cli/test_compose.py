"""Composition errors become one line naming the key, the recipe or the stage, with a suggestion."""

import pytest

from dharma_train.cli.compose import compose_config, split_words
from dharma_train.errors import ConfigError


@pytest.mark.parametrize("overrides, message", [
    (["recipe=tin"], "unknown recipe 'tin' (did you mean tiny?); known recipe options: ablation_3b"),
    (["trainer=gpux"], "unknown trainer 'gpux' (did you mean gpu?); known trainer options: auto, cpu, gpu"),
    (["stages.structured.optimization.lr=1"],
     "unknown config key 'stages.structured.optimization.lr' (did you mean "
     "stages.structured.optimization.learning_rate?)"),
    (["stages.strucured.optimization.max_steps=3"],
     "'strucured' is not a stage of this recipe (its stages: general_ocr, structured, dpo, grpo, quantize, export) "
     "(did you mean stages.structured.optimization.max_steps?)"),
    (["recipe=nanonets_3b", "stages.general_ocr.task=plain"],
     "'general_ocr' is not a stage of this recipe (its stages: structured, dpo, grpo, quantize, export)"),
    (["output_dir=x", "oops"], "cannot read 'oops': overrides are key=value"),
])
def test_errors_are_one_line_with_what_was_meant(overrides, message):
    with pytest.raises(ConfigError) as raised:
        compose_config(overrides)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_recipe_file_first_becomes_a_recipe_that_can_build_on_a_shipped_one(tmp_path):
    recipe = tmp_path / "short_ladder.yaml"
    recipe.write_text("defaults:\n  - /recipe@_here_: tiny\n  - _self_\n"
                      "stages:\n  structured:\n    optimization:\n      max_steps: 3\n")
    overrides, options = split_words([str(recipe), "output_dir=/tmp/x", "--cfg", "job"])
    assert overrides == ["recipe=short_ladder", "output_dir=/tmp/x"] and options == ["--cfg", "job"]
    cfg = compose_config(overrides)
    assert cfg.name == "short_ladder", "a file without `name` is named after itself"
    assert cfg.stages.structured.optimization.max_steps == 3 and "dpo" in cfg.stages


def test_a_missing_recipe_file_or_one_given_later_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="recipe file .*nope.yaml does not exist"):
        split_words([str(tmp_path / "nope.yaml")])
    (tmp_path / "r.yaml").write_text("name: r\n")
    with pytest.raises(ConfigError, match="a recipe file goes first"):
        split_words(["output_dir=x", str(tmp_path / "r.yaml")])


def test_a_subset_of_stages_is_the_recipe_minus_the_removed_ones():
    cfg = compose_config(["~stages.dpo", "~stages.quantize"])
    assert list(cfg.stages) == ["general_ocr", "structured", "grpo", "export"]  # grpo: an optional rung, off


def test_a_recipe_file_with_a_key_given_twice_names_the_key_and_its_line(tmp_path):
    """PyYAML's message spans lines; its first one ('while constructing a mapping') named neither key nor line."""
    recipe = tmp_path / "twice.yaml"
    recipe.write_text("name: twice\nstages:\n  structured:\n    kind: sft\n    kind: dpo\n")
    with pytest.raises(ConfigError, match=r"recipe file .*twice\.yaml is not valid YAML: duplicate key 'kind' on "
                                          r"line 5 \(the mapping that starts on line 4 already has it\)"):
        split_words([str(recipe)])
    recipe.write_text("name: twice\nstages: [a\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml is not valid YAML: .*expected ',' or ']'.* on line 3"):
        split_words([str(recipe)])
