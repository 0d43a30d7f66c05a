"""The help names every shipped recipe with its own one-line summary, and every stage kind."""

from dharma_train.cli.help import STAGE_KINDS, help_text, recipe_summary, version
from dharma_train.config_files import recipe_names
from dharma_train.stages import STAGE_CONFIGS


def test_help_lists_each_recipe_with_the_first_sentence_of_its_own_comment():
    text = help_text()
    assert recipe_summary("tiny") == \
        "the whole specialization ladder on the embedded random-init Qwen2.5-VL, on a laptop CPU"
    for name in recipe_names():
        assert f"  {name:<15} {recipe_summary(name)}" in text and recipe_summary(name)
    assert set(STAGE_KINDS) == set(STAGE_CONFIGS), "every stage kind is explained"
    assert text.startswith(f"dharma_train {version()}: ")
