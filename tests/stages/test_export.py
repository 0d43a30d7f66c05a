"""Export on the tiny model: a folder plain transformers loads and prompts, with a card, LoRA chains merged."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText

from dharma_train import StageContext, TrainerConfig
from dharma_train.artifact import ModelArtifact
from dharma_train.errors import ConfigError, DharmaError
from dharma_train.models.loading import load_model, load_processor
from dharma_train.stages.export import ExportStage, ExportStageConfig, push_to_hub

CONTEXT = StageContext(trainer=TrainerConfig(device="cpu", precision="fp32"), run_name="tiny")

# Runs in a fresh interpreter: only transformers, PIL and the exported folder. Without torchvision (CPU machines here)
# AutoProcessor cannot build Qwen2.5-VL's video half, and transformers 5.17's AutoImageProcessor refuses to load at
# all, so the PIL image processor is named; scripts/benchmarks/bench_quantize.py runs AutoProcessor where torchvision is.
PLAIN_TRANSFORMERS = r"""
import json, sys
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoTokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
folder, image = sys.argv[1], sys.argv[2]
model = AutoModelForImageTextToText.from_pretrained(folder)
tokenizer = AutoTokenizer.from_pretrained(folder)
processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
images = processor(images=[Image.open(image).convert("RGB")], return_tensors="pt")
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Transcreva."}]}]
prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
tokens = images["image_grid_thw"].prod().item() // 4  # 2 x 2 patches merge into one token
prompt = prompt.replace("<|image_pad|>", "<|image_pad|>" * tokens)
inputs = tokenizer([prompt], return_tensors="pt")
out = model.generate(**inputs, **images, max_new_tokens=5, do_sample=False)
print(json.dumps({"new_tokens": out.shape[1] - inputs["input_ids"].shape[1],
                  "eos": model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>"),
                  "dharma_train": "dharma_train" in sys.modules}))
"""


def _plain_load(folder: Path, image: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", PLAIN_TRANSFORMERS, str(folder), str(image)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_export_of_a_full_model_loads_and_generates_with_plain_transformers(tiny_artifact, pages, tmp_path):
    result = ExportStage("export").run(tiny_artifact, pages[0], tmp_path / "05_export", CONTEXT)
    folder = tmp_path / "05_export" / "model"
    assert result.artifact.path == str(folder)
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja",
            "processor_config.json", "README.md"} <= names
    processor = json.loads((folder / "processor_config.json").read_text())
    assert processor["processor_class"] == "Qwen2_5_VLProcessor"
    assert processor["video_processor"]["patch_size"] == processor["image_processor"]["patch_size"]
    loaded = _plain_load(folder, pages[1].pages[0].image)
    assert loaded == {"new_tokens": 5, "eos": True, "dharma_train": False}
    # dharma_train's own loaders read the standard processor too, torchvision or not
    assert type(load_processor(result.artifact.path)).__name__ in ("Qwen2_5_VLProcessor", "Qwen2_5_VLImageProcessor")
    assert load_model(result.artifact) is not None
    assert "No evaluation was recorded" in (folder / "README.md").read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {p.name: 0o666 & ~umask for p in
                                                                           folder.iterdir()}, "none left 0600"
    assert not (tmp_path / "05_export" / "model.tmp").exists()


def test_export_merges_an_adapter_chain_into_plain_weights(tiny_artifact, pages, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = AutoModelForImageTextToText.from_pretrained(tiny_artifact.path)
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapted.save_pretrained(tmp_path / "adapter")
    artifact = ModelArtifact(path=str(tmp_path / "adapter"), base=tiny_artifact, processor_path=tiny_artifact.path)
    result = ExportStage("export", ExportStageConfig(dtype="float32")).run(artifact, pages[0], tmp_path / "e", CONTEXT)
    exported = AutoModelForImageTextToText.from_pretrained(result.artifact.path)
    merged = adapted.merge_and_unload()
    assert not (Path(result.artifact.path) / "adapter_config.json").exists()
    for name, tensor in merged.state_dict().items():
        assert torch.allclose(tensor, exported.state_dict()[name], atol=1e-6), name


def test_push_to_hub_refuses_offline_before_any_work(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    stage = ExportStage("export", ExportStageConfig(push_to_hub="someone/tiny-ocr"))
    with pytest.raises(ConfigError, match="push_to_hub=someone/tiny-ocr but HF_HUB_OFFLINE is set"):
        stage.check()
    with pytest.raises(DharmaError, match="HF_HUB_OFFLINE is set"):
        push_to_hub(tmp_path, "someone/tiny-ocr", private=True)
    ExportStage("export").check()  # no upload asked: nothing to refuse


def test_push_to_hub_failure_is_one_clear_error(monkeypatch, tmp_path):
    """An unreachable endpoint (a closed local port, no network touched) stops the stage with the way out."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    with pytest.raises(DharmaError, match=r"cannot push .* someone/tiny-ocr .*hf upload someone/tiny-ocr"):
        push_to_hub(tmp_path, "someone/tiny-ocr", private=True)


def test_config_checks_the_repo_id_and_dtype():
    with pytest.raises(ValueError, match="user/name"):
        ExportStageConfig(push_to_hub="no-namespace")
    with pytest.raises(ValueError, match="dtype"):
        ExportStageConfig(dtype="int4")
