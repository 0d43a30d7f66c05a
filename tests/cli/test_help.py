"""The help names every shipped recipe with its own one-line summary, and every stage kind."""

from dharma_train.cli.help import STAGE_KINDS, help_text, recipe_summary, version
from dharma_train.config_files import recipe_names
from dharma_train.stages import STAGE_CONFIGS


def test_help_lists_each_recipe_with_the_first_sentence_of_its_own_comment():
    text = help_text()
    assert recipe_summary("tiny") == ("the default, the whole specialization ladder on a laptop CPU from the embedded "
                                      "reader that ships with dharma_train, on pages it can read")
    assert recipe_summary("tiny_random") == \
        "the whole specialization ladder on the embedded random-init Qwen2.5-VL (model.path=tiny, 0.78 M " \
        "parameters: it reads nothing), for tests and smoke runs that need speed, not reading"
    flat = " ".join(text.split())  # a long summary is wrapped onto the lines under its recipe
    for name in recipe_names():
        assert recipe_summary(name) and f"{name} {recipe_summary(name)}" in flat
    assert set(STAGE_KINDS) == set(STAGE_CONFIGS), "every stage kind is explained"
    assert text.startswith(f"dharma_train {version()}: ")


def test_a_summary_runs_to_the_end_of_its_sentence_over_the_comment_lines_it_spans():
    """tiny_ablation's first sentence spans two comment lines; the help once cut it after 'two tiny ladders:'."""
    assert recipe_summary("tiny_ablation") == ("the ablation machinery on the embedded random-init model, on a CPU, "
                                               "offline (two tiny ladders: roughly twice the tiny_random recipe's "
                                               "time, docs/tiny-ladder.md)")
    for name in recipe_names():
        summary = recipe_summary(name)
        assert summary.count("(") == summary.count(")") and not summary.endswith((":", ",", ";")), (name, summary)
    lines = help_text().splitlines()
    entry = lines.index(next(line for line in lines if line.startswith("  tiny_ablation ")))
    assert lines[entry + 1].strip() == "roughly twice the tiny_random recipe's time, docs/tiny-ladder.md)"
    assert max(len(line) for line in lines) <= 114
