import pytest

from dharma_train.artifact import ModelArtifact
from dharma_train.errors import ModelUnavailableError
from dharma_train.models.loading import check_available, load_model, load_processor


def test_missing_folder_and_uncached_hub_model_fail_clearly(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        check_available(ModelArtifact(path=str(tmp_path / "missing")))
    with pytest.raises(ModelUnavailableError, match="has no config.json"):
        check_available(ModelArtifact(path=str(tmp_path)))
    # conftest sets HF_HUB_OFFLINE=1: the check must not try the network
    with pytest.raises(ModelUnavailableError, match="not in the Hugging Face cache and HF_HUB_OFFLINE is set"):
        check_available(ModelArtifact(path="nanonets/Nanonets-OCR2-3B"))


def test_pixel_budget_reaches_the_image_processor(tiny_artifact):
    processor = load_processor(tiny_artifact.path, min_pixels=3136, max_pixels=50176)
    assert processor.image_processor.size["shortest_edge"] == 3136
    assert processor.image_processor.size["longest_edge"] == 50176
    assert processor.tokenizer.padding_side == "left"


def test_load_model_in_bfloat16(tiny_artifact):
    import torch

    model = load_model(tiny_artifact, dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_loading_a_quantized_folder_draws_no_library_bar(tiny_artifact, pages, tmp_path, capfd):
    """compressed-tensors draws a "Decompressing model" bar at the first forward of a loaded quantized folder (inside
    the evaluation's "generating" bar, with a cursor-up line); it has no switch of its own."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("llmcompressor") is None:
        pytest.skip("needs llm-compressor")
    from dharma_train import QuantizeStage, StageContext, TrainerConfig

    result = QuantizeStage("q", {"calibration_pages": 4, "min_calibration_pages": 4, "group_size": 32}).run(
        tiny_artifact, pages[0], tmp_path / "q", StageContext(trainer=TrainerConfig(device="cpu")))
    from dharma_train import EvalConfig, evaluate

    capfd.readouterr()
    metrics = evaluate(result.artifact.path, None, pages[1], EvalConfig(max_new_tokens=4, batch_size=2, max_pages=2))
    assert metrics["pages"] == 2 and "Decompressing model" not in capfd.readouterr().err
