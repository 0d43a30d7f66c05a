"""Quantization on the tiny model, on CPU: AWQ and FP8 through llm-compressor, NF4 through bitsandbytes.

The outputs load with plain transformers, keep the vision tower's weights untouched, and hold 4-bit weights.
"""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForImageTextToText

from dharma_train import StageContext, TrainerConfig
from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import PageSet
from dharma_train.errors import ConfigError, DataError, ModelUnavailableError
from dharma_train.evaluation.hook import EvalConfig, evaluate
from dharma_train.models.loading import load_model, load_processor
from dharma_train.stages.quantize import QuantizeStage, QuantizeStageConfig, check_quantizable

CONTEXT = StageContext(trainer=TrainerConfig(device="cpu", precision="fp32"))
needs_llmcompressor = pytest.mark.skipif(importlib.util.find_spec("llmcompressor") is None,
                                         reason="llm-compressor is not installed (pip install 'dharma_train[quantize]')")
needs_bitsandbytes = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                        reason="bitsandbytes is not installed (optional: pip install bitsandbytes)")


def _quantize(scheme, artifact, pages, folder, **extra):
    config = QuantizeStageConfig(scheme=scheme, calibration_pages=4, min_calibration_pages=4, **extra)
    return QuantizeStage("quantize", config).run(artifact, pages, folder, CONTEXT)


@pytest.fixture(scope="module")
def awq(tiny_artifact, pages, tmp_path_factory):
    """One AWQ run shared by the tests that read its output (groups of 64: not the default, so the setting is seen)."""
    folder = tmp_path_factory.mktemp("awq")
    return folder, _quantize("awq_w4a16", tiny_artifact, pages[0], folder, group_size=64)


def _vision_state(model):
    return {name: tensor for name, tensor in model.state_dict().items() if ".visual." in f".{name}"}


@needs_llmcompressor
def test_awq_w4a16_packs_language_linears_into_4_bits_and_leaves_the_vision_tower(tiny_artifact, pages, awq):
    stage_dir, result = awq
    folder = stage_dir / "model"
    assert result.artifact.path == str(folder)
    assert result.metrics["calibration_pages"] == 4
    assert json.loads((stage_dir / "stage.json").read_text())["metrics"]["scheme"] == "awq_w4a16"
    assert result.metrics["output_weights_bytes"] < result.metrics["input_weights_bytes"]
    quantization = json.loads((folder / "config.json").read_text())["quantization_config"]
    weights = quantization["config_groups"]["group_0"]["weights"]
    assert (quantization["quant_method"], weights["num_bits"], weights["group_size"]) == ("compressed-tensors", 4, 64)
    with safe_open(folder / "model.safetensors", "pt") as stored:
        keys = set(stored.keys())
    assert any(key.endswith("mlp.gate_proj.weight_packed") for key in keys)
    assert not any("visual" in key and "weight_packed" in key for key in keys)

    source = AutoModelForImageTextToText.from_pretrained(tiny_artifact.path)
    quantized = load_model(result.artifact)
    for name, tensor in _vision_state(source).items():
        assert torch.equal(tensor, _vision_state(quantized)[name]), f"vision weight {name} changed"
    # The first forward decompresses; every language linear then holds 16 levels per group of 64 inputs.
    metrics = evaluate(quantized, load_processor(result.artifact.path), PageSet(pages[1].root, pages[1].pages[:2]),
                       EvalConfig(max_new_tokens=4, batch_size=2), progress=False)
    assert metrics["pages"] == 2 and metrics["model_memory_gib"] > 0
    assert metrics["decode_backend"] == "float32 dense (decompressed from compressed-tensors)", \
        "off CUDA the report says its AWQ speed was measured on dense weights"
    layer = quantized.model.language_model.layers[0].mlp.gate_proj
    groups = layer.weight.detach().reshape(layer.out_features, -1, 64)
    levels = groups / layer.weight_scale.detach().unsqueeze(-1)
    assert torch.allclose(levels, levels.round(), atol=1e-3) and levels.abs().max() <= 8
    assert not torch.equal(layer.weight, source.model.language_model.layers[0].mlp.gate_proj.weight)


QUANTIZE_IN_A_PROCESS = """
import sys
from pathlib import Path
from dharma_train import StageContext, TrainerConfig, tiny_model
from dharma_train.data.pages import load_pages
from dharma_train.stages.quantize import QuantizeStage, QuantizeStageConfig
config = QuantizeStageConfig(scheme="awq_w4a16", calibration_pages=4, min_calibration_pages=4)
QuantizeStage("quantize", config).run(tiny_model(), load_pages(sys.argv[1]), Path(sys.argv[2]),
                                      StageContext(trainer=TrainerConfig(device="cpu", precision="fp32")))
"""


@needs_llmcompressor
def test_awq_draws_one_labelled_bar_not_llm_compressors_nested_ones(tiny_artifact, pages, tmp_path):
    """llm-compressor's AWQ nests a "Grid search" bar per layer in "Calibrating" ones (190 cursor-up sequences on
    the tiny model): the stage shows its own bar instead, and tqdm is itself again afterwards."""
    from tqdm import std

    before = std.tqdm.__dict__["__init__"]
    done = subprocess.run([sys.executable, "-c", QUANTIZE_IN_A_PROCESS, str(pages[0].root), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("\x1b[A") <= 3, done.stderr[-3000:]
    assert "Grid search" not in done.stderr and "Calibrating" not in done.stderr
    assert "quantizing quantize (awq_w4a16): 100%" in done.stderr and "3/3" in done.stderr
    assert (tmp_path / "model" / "model.safetensors").is_file()
    _quantize("fp8", tiny_artifact, PageSet(pages[0].root, pages[0].pages[:1]), tmp_path / "fp8")
    assert std.tqdm.__dict__["__init__"] is before, "the silencing patch is undone"


@needs_llmcompressor
def test_fp8_needs_no_calibration_pages(tiny_artifact, pages, tmp_path):
    few = PageSet(pages[0].root, pages[0].pages[:1])
    result = _quantize("fp8", tiny_artifact, few, tmp_path)
    assert result.metrics["calibration_pages"] == 0
    weights = json.loads((tmp_path / "model" / "config.json").read_text())["quantization_config"]["config_groups"]
    assert weights["group_0"]["weights"]["type"] == "float" and weights["group_0"]["weights"]["num_bits"] == 8
    assert load_model(result.artifact) is not None


@needs_bitsandbytes
def test_bnb4_saves_nf4_weights_that_load_with_device_map(tiny_artifact, pages, tmp_path):
    result = _quantize("bnb4", tiny_artifact, pages[0], tmp_path)
    model = load_model(result.artifact, device="cpu")
    assert type(model.model.language_model.layers[0].mlp.gate_proj).__name__ == "Linear4bit"
    assert type(model.model.visual.blocks[0].mlp.gate_proj) is torch.nn.Linear


def test_bad_inputs_stop_before_any_model_loads(tiny_artifact, pages, tmp_path):
    adapter = ModelArtifact(path=str(tmp_path / "adapter"), base=tiny_artifact)
    with pytest.raises(ConfigError, match="LoRA adapter, not merged weights"):
        check_quantizable(adapter, "quantize")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ConfigError, match=r"architecture \['LlamaForCausalLM'\].*not supported"):
        check_quantizable(ModelArtifact(path=str(other)), "quantize")
    (other / "config.json").write_text(json.dumps({"architectures": ["Qwen2_5_VLForConditionalGeneration"],
                                                   "quantization_config": {"quant_method": "compressed-tensors"}}))
    with pytest.raises(ConfigError, match="already quantized"):
        check_quantizable(ModelArtifact(path=str(other)), "quantize")
    with pytest.raises(ConfigError, match="not a local model folder"):
        check_quantizable(ModelArtifact(path="someone/model"), "quantize")
    (other / "config.json").write_text(json.dumps({"architectures": ["Qwen2_5_VLForConditionalGeneration"],
                                                   "text_config": {"hidden_size": 96, "intermediate_size": 384}}))
    uneven = QuantizeStage("quantize", QuantizeStageConfig(group_size=64))
    with pytest.raises(ConfigError, match=r"group_size 64 does not divide \{'hidden_size': 96\}.*one of \[32\]"):
        uneven.run(ModelArtifact(path=str(other)), pages[0], tmp_path / "uneven", CONTEXT)
    stage = QuantizeStage("quantize", QuantizeStageConfig(calibration_pages=64, min_calibration_pages=32))
    with pytest.raises(DataError, match="16 calibration pages .* needs at least 32"):
        stage.run(tiny_artifact, pages[0], tmp_path / "q", CONTEXT)
    assert not (tmp_path / "q" / "model").exists()


def test_config_refuses_unknown_schemes_and_bad_patterns():
    with pytest.raises(ValueError, match="scheme"):
        QuantizeStageConfig(scheme="gguf")
    with pytest.raises(ValueError, match="min_calibration_pages"):
        QuantizeStageConfig(calibration_pages=8, min_calibration_pages=16)
    with pytest.raises(ValueError, match="not a regular expression"):
        QuantizeStageConfig(ignore=["visual("])
    with pytest.raises(ValueError, match=r"group_size must be one of \[32, 64, 128\], got 48"):
        QuantizeStageConfig(group_size=48)


def test_missing_library_is_reported_by_check(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llmcompressor" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the llmcompressor package: pip install 'dharma_train\[quantize\]'"):
        QuantizeStage("quantize").check()


@needs_llmcompressor
def test_quantized_folder_loads_without_dharma_train(awq):
    code = ("import sys; from transformers import AutoModelForImageTextToText as M;"
            f"m = M.from_pretrained(r'{awq[0] / 'model'}');"
            "print(type(m.model.visual.blocks[0].mlp.gate_proj).__name__, 'dharma_train' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["Linear", "False"]


@needs_llmcompressor
def test_loading_a_quantized_folder_without_its_package_names_the_install(awq, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "compressed_tensors" else real(name, *a))
    with pytest.raises(ModelUnavailableError, match=r"compressed-tensors; .* pip install 'dharma_train\[quantize\]'"):
        load_model(awq[1].artifact)


@needs_llmcompressor
def test_awq_output_runs_on_the_int4_kernel_with_the_logits_of_its_decompressed_weights(awq):
    from dharma_train.models.quantized import Int4Linear, use_int4_kernels

    quantized = load_model(awq[1].artifact).eval()
    ids = torch.randint(0, 900, (2, 10))
    with torch.inference_mode():
        expected = quantized(input_ids=ids).logits  # compressed-tensors' own (decompressed) weights
        replaced = use_int4_kernels(quantized, awq[0] / "model")
        got = quantized(input_ids=ids).logits
    linears = [m for m in quantized.model.language_model.modules() if isinstance(m, Int4Linear)]
    assert replaced == len(linears) == 7 * len(quantized.model.language_model.layers)
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-3)


@needs_llmcompressor
@pytest.mark.slow
def test_a_quantize_stage_run_from_python_is_as_quiet_as_the_cli(tiny_artifact, pages, tmp_path):
    """llm-compressor and compressed-tensors log every lifecycle step and "No accelerator available" (many times a
    run on a CPU); the CLI hid them, a Python script printed them all."""
    script = f"""
from pathlib import Path
from dharma_train import QuantizeStage, StageContext, TrainerConfig
from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import load_pages
QuantizeStage("q", {{"calibration_pages": 4, "min_calibration_pages": 4, "group_size": 32}}).run(
    ModelArtifact(path={tiny_artifact.path!r}), load_pages({str(pages[0].root)!r}), Path({str(tmp_path / "q")!r}),
    StageContext(trainer=TrainerConfig(device="cpu")))
"""
    env = {key: value for key, value in __import__("os").environ.items() if "LOG_LEVEL" not in key}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    noise = [line for line in done.stderr.splitlines()
             if any(word in line for word in ("No accelerator available", "Compression lifecycle", "is_fx_tracing",
                                              "Attempting to save a model with offloaded modules"))]
    assert not noise, noise[:5]
    assert (tmp_path / "q" / "model" / "config.json").is_file()
