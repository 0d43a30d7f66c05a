"""'Did you mean' finds the key a user from another trainer or with a typo meant."""

from dharma_train.cli.suggestions import close_names, close_paths, did_you_mean, flat_keys

KNOWN = flat_keys({"name": "tiny", "output_dir": "x", "trainer": {"seed": 0},
                   "stages": {"structured": {"optimization": {"learning_rate": 1, "max_steps": 1}},
                              "dpo": {"optimization": {"learning_rate": 1}}}})


def test_aliases_from_other_trainers_and_typos():
    assert close_names("lr", ["batch_size", "learning_rate"]) == ["learning_rate"]
    assert close_names("num_train_epochs", ["epochs", "warmup"]) == ["epochs"]
    assert close_names("lerning_rate", ["learning_rate", "lr_scheduler"]) == ["learning_rate"]
    assert close_names("zzz", ["learning_rate"]) == []


def test_paths_respell_the_first_unknown_part_then_fall_back_to_the_leaf():
    assert close_paths("stages.strucured.optimization.max_steps", KNOWN) == \
        ["stages.structured.optimization.max_steps"]
    assert close_paths("stages.structured.optimization.lr", KNOWN) == ["stages.structured.optimization.learning_rate"]
    assert sorted(close_paths("lr", KNOWN)) == ["stages.dpo.optimization.learning_rate",
                                                "stages.structured.optimization.learning_rate"]
    assert close_paths("trainer.sed", KNOWN) == ["trainer.seed"]
    assert close_paths("nothing_like_it", KNOWN) == []
    assert close_paths("trainer.seed", KNOWN) == [], "a known key's error is not its spelling (it raised IndexError)"


def test_wording():
    assert did_you_mean([]) == ""
    assert did_you_mean(["a"]) == " (did you mean a?)"
    assert did_you_mean(["a", "b", "c"]) == " (did you mean a? or b, c)"
