"""evaluation/hook.py: the one evaluation function, called on a loaded model or on a model's folder."""

import pytest
import torch

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


def test_an_int4_model_records_what_its_linears_ran_on_and_why(tiny_artifact, pages):
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.models.quantized import int4_linear_from_codes, int4_supported, quantize_groups, set_module

    model = load_model(tiny_artifact)
    text = model.model.language_model
    for name, module in list(text.named_modules()):
        if isinstance(module, torch.nn.Linear) and int4_supported(module.in_features, module.out_features, 32):
            codes, scale = quantize_groups(module.weight.data, 32)
            set_module(text, name, int4_linear_from_codes(codes, scale, None, module.bias, "cpu"))
    metrics = evaluate(model, load_processor(tiny_artifact.processor_location), pages[1],
                       EvalConfig(max_new_tokens=4, batch_size=2, max_pages=2), progress=False)
    assert metrics["decode_backend"] == ("int4 tinygemm 14/15, float32 dense 1/15; "  # the LM head stays dense
                                         "int4 prefill: tinygemm at every size")
    assert metrics["int4_kernel_choice"] == ["int4 kernels not measured on cpu: tinygemm at every row count; "
                                             "gemlite not installed (pip install 'dharma_train[gemlite]')"]


def test_config_refuses_a_negative_prompt_chunk():
    with pytest.raises(ValueError, match="evaluation.prefill_chunk_tokens"):
        EvalConfig(prefill_chunk_tokens=-1)
    assert EvalConfig(prefill_chunk_tokens=0).prefill_chunk_tokens == 0  # 0: every waiting prompt in one step
