"""Every recipe resolves offline from the command line; the real ones stop with one clear message without a model."""

import os
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from dharma_train.config import validate
from dharma_train.config_files import config_dir, recipe_names, register_recipes
from dharma_train.models.config import TINY

REAL = [name for name in recipe_names() if not name.startswith("tiny")]


def _cli(*args, cwd, env=None):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dharma_train", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def _config(recipe: str):
    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=[f"recipe={recipe}", "output_dir=/tmp/x"]))


def test_the_four_real_recipes_and_their_ablations_exist():
    assert {"nanonets_3b", "qwen25vl_3b", "qwen25vl_7b", "olmocr2_7b", "ablation_3b", "ablation_7b"} <= set(REAL)


@pytest.mark.parametrize("recipe", recipe_names())
def test_cfg_job_prints_the_resolved_recipe_offline(tmp_path, recipe):
    result = _cli(f"recipe={recipe}", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"name: {recipe}\n" in result.stdout
    assert "kind: sft" in result.stdout


@pytest.mark.parametrize("recipe", REAL)
def test_real_recipe_without_the_model_stops_with_one_message_before_any_work(tmp_path, monkeypatch, caplog, recipe):
    """In process, against an empty Hugging Face cache (tests/test_main.py runs nanonets_3b's as a subprocess)."""
    from huggingface_hub import constants

    from dharma_train.__main__ import _run

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    register_recipes()
    out = tmp_path / "run"
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"recipe={recipe}", f"output_dir={out}"])
    with pytest.raises(SystemExit) as stopped:
        _run(cfg)
    assert stopped.value.code == 2
    assert re.search(r"model \S+ is not in the Hugging Face cache and HF_HUB_OFFLINE is set", caplog.text)
    assert not (out / "data").exists()


def test_unknown_key_in_a_real_recipe_is_refused_with_its_name(tmp_path):
    result = _cli("recipe=qwen25vl_7b", "stages.general_ocr.optimization.lora.rank=8", "--cfg", "job", cwd=tmp_path)
    assert result.returncode != 0
    assert "rank" in result.stdout + result.stderr


@pytest.mark.parametrize("recipe", REAL)
def test_real_recipes_fit_one_gpu_in_bf16_with_lora(recipe):
    config = _config(recipe)
    assert config.trainer.device == "cuda" and config.trainer.precision == "bf16"
    assert config.trainer.gradient_checkpointing is None and config.trainer.performance.recompute == "auto"
    paths = [base.path for base in config.ablation.bases.values()] or [config.model.path]
    assert TINY not in paths
    trained = [stage for stage in config.stages.values() if hasattr(stage, "optimization")]
    assert trained and [stage.kind for stage in config.stages.values()][-2:] == ["quantize", "export"]
    for stage in trained:
        assert stage.optimization.method == "lora", "full fine-tuning of 3B+ in fp32 master weights exceeds 80 GB"
        assert stage.optimization.batch_size * stage.optimization.gradient_accumulation >= 8


def test_general_bases_climb_the_whole_ladder_and_specialists_start_at_the_portuguese_rung():
    for recipe in ("qwen25vl_3b", "qwen25vl_7b"):
        config = _config(recipe)
        assert list(config.stages) == ["general_ocr", "structured", "dpo", "quantize", "export"]
        assert config.stages["general_ocr"].task == "plain"
    for recipe in ("nanonets_3b", "olmocr2_7b"):
        assert list(_config(recipe).stages) == ["structured", "dpo", "quantize", "export"]


def test_the_7b_pair_differs_only_in_the_model():
    qwen, olmocr = _config("qwen25vl_7b"), _config("olmocr2_7b")
    assert qwen.stages["structured"] == olmocr.stages["structured"] and qwen.stages["dpo"] == olmocr.stages["dpo"]
    assert (qwen.model.min_pixels, qwen.model.max_pixels) == (olmocr.model.min_pixels, olmocr.model.max_pixels)
    assert qwen.model.path != olmocr.model.path


def test_the_general_ocr_rung_adapts_vision_blocks_and_language_projections(tiny_artifact):
    """The rung's LoRA regex, as peft applies it (full match on module names), on a real Qwen2.5-VL's modules."""
    import torch

    from dharma_train.models.loading import load_model

    pattern = re.compile(_config("qwen25vl_3b").stages["general_ocr"].optimization.lora.target_modules)
    linears = [name for name, module in load_model(tiny_artifact).named_modules()
               if isinstance(module, torch.nn.Linear)]
    chosen = [name for name in linears if pattern.fullmatch(name)]
    assert any(".visual.blocks." in name for name in chosen)
    assert any(".language_model." in name for name in chosen)
    assert "lm_head" not in chosen and not any("merger" in name for name in chosen)


@pytest.mark.parametrize("big, small", [("olmocr2_7b", "nanonets_3b"), ("qwen25vl_7b", "qwen25vl_3b")])
def test_a_7b_recipe_is_its_3b_twin_with_only_the_model_and_batch_sizes_changed(big, small):
    """The 7B recipes state only what differs (they include their 3B twin): a setting changed in the 3B recipe
    reaches the 7B one, and nothing else drifts apart."""
    from dataclasses import asdict

    def flat(value, prefix=""):
        if isinstance(value, dict):
            return {key: leaf for name, inner in value.items() for key, leaf in flat(inner, f"{prefix}{name}.").items()}
        return {prefix[:-1]: value}

    big_config, small_config = flat(asdict(_config(big))), flat(asdict(_config(small)))
    assert set(big_config) == set(small_config)
    changed = {key for key in big_config if big_config[key] != small_config[key]}
    allowed = re.compile(r"name|model\.path|evaluation\.batch_size|stages\.\w+\.(mining\.batch_size|"
                         r"optimization\.(batch_size|gradient_accumulation))")
    assert changed and all(allowed.fullmatch(key) for key in changed), sorted(changed)


def test_the_default_tiny_is_the_random_init_ladder_from_the_shipped_reader_on_pages_it_can_read(tmp_path):
    """recipe=tiny (the default): tiny_random's stages, the embedded reader as base (offline, in the package), readable
    page geometry, the vision tower frozen; `plan` names where the model comes from."""
    from dharma_train.artifact import base_artifact
    from dharma_train.models.config import TINY, TINY_READER

    reader, fast = _config("tiny"), _config("tiny_random")
    assert reader.model.path == TINY_READER and list(reader.stages) == list(fast.stages)
    assert fast.model.path == TINY, "the random-init ladder stays, for tests that need speed"
    s = reader.data.synthetic
    assert (s.width, s.height, s.max_words) == (448, 336, 24) and min(s.min_body_px.values()) >= 17
    assert all(reader.stages[name].optimization.freeze_vision for name in ("general_ocr", "structured"))
    assert (base_artifact(TINY_READER).path.rstrip("/").endswith("tiny_reader"))
    result = _cli("plan", f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model: tiny-reader (shipped with dharma_train, offline)" in result.stdout
