"""evaluation/hook.py: the one evaluation function, called on a loaded model or on a model's folder."""

import pytest

from dharma_train import EvalConfig, evaluate


def test_evaluate_takes_a_model_folder_and_matches_the_loaded_model(tiny_artifact, pages):
    from dharma_train.models.loading import load_model, load_processor

    _, eval_pages = pages
    config = EvalConfig(max_new_tokens=6, batch_size=2, max_pages=2)
    by_folder = evaluate(tiny_artifact.path, None, eval_pages, config, progress=False)
    loaded = evaluate(load_model(tiny_artifact), load_processor(tiny_artifact.processor_location), eval_pages, config,
                      progress=False)
    assert by_folder["pages"] == loaded["pages"] == 2
    assert by_folder["cer"] == loaded["cer"]  # the same greedy answers


def test_a_loaded_model_without_its_processor_says_what_to_pass(tiny_artifact, pages):
    from dharma_train.models.loading import load_model

    with pytest.raises(TypeError, match="needs its processor"):
        evaluate(load_model(tiny_artifact), None, pages[1], EvalConfig(max_new_tokens=2))
