"""dharma_train/models/hub_layout.py: a folder laid out like the Hub's Qwen2.5-VL, and the looping model built on it."""

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from dharma_train.artifact import ModelArtifact
from dharma_train.data.prompts import prompt_messages
from dharma_train.models import hub_layout as hub
from dharma_train.models.loading import load_model, load_processor


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    return hub.write_checkpoint(root / "dense", "tiny"), hub.write_checkpoint(root / "looping", "tiny", looping=True)


def test_the_folder_has_the_hubs_files_ids_and_template(folders):
    dense, _ = folders
    names = {p.name for p in dense.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "preprocessor_config.json", "chat_template.json"} <= names
    assert not (dense / "processor_config.json").exists(), "the Hub's Qwen2.5-VL folders have none"
    config = json.loads((dense / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == 151936 and config["image_token_id"] == 151655
    tokenizer_config = json.loads((dense / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "Qwen2Tokenizer"
    processor = load_processor(str(dense))
    tokenizer = processor.tokenizer
    assert len(tokenizer) == 151665 and tokenizer.eos_token_id == 151645 and tokenizer.pad_token_id == 151643
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|image_pad|>", "<|file_sep|>")] == \
        [151652, 151655, 151664]
    prompt = tokenizer.apply_chat_template(prompt_messages("structured"), add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")


def test_a_hub_folder_loads_on_a_machine_without_torchvision(folders):
    """The Hub folder names Qwen2_5_VLProcessor in preprocessor_config.json only; without torchvision the stock
    processor cannot be built, so the image-only one must be chosen from that file too."""
    import importlib.util

    dense, _ = folders
    processor = load_processor(str(dense), max_pixels=28 * 28 * 16)
    if importlib.util.find_spec("torchvision") is None:
        assert type(processor).__name__ == "Qwen2_5_VLImageProcessor"
    inputs = processor(images=[Image.new("RGB", (112, 112), "white")], text=["<|vision_start|><|image_pad|><|vision_end|>"],
                       return_tensors="pt")
    assert int((inputs["input_ids"] == 151655).sum()) == 16


def test_the_looping_model_repeats_its_line_greedy_and_sampled(folders):
    _, looping = folders
    processor = load_processor(str(looping), max_pixels=28 * 28 * 16)
    model = load_model(ModelArtifact(path=str(looping)))
    prompt = processor.tokenizer.apply_chat_template(prompt_messages("structured"), add_generation_prompt=True,
                                                     tokenize=False)
    inputs = processor(images=[Image.new("RGB", (112, 112), "white")], text=[prompt], return_tensors="pt")
    torch.manual_seed(0)
    for options in ({"do_sample": False}, {"do_sample": True, "temperature": 1.0, "top_p": 0.95}):
        out = model.generate(**inputs, max_new_tokens=36, **options)
        text = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:])
        assert text.startswith(hub.LOOP_TEXT * 2), text


def test_the_dense_model_does_not_loop(folders):
    dense, _ = folders
    processor = load_processor(str(dense), max_pixels=28 * 28 * 16)
    model = load_model(ModelArtifact(path=str(dense)))
    inputs = processor(images=[Image.new("RGB", (112, 112), "white")],
                       text=[processor.tokenizer.apply_chat_template(prompt_messages("structured"),
                                                                     add_generation_prompt=True, tokenize=False)],
                       return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    assert hub.LOOP_TEXT not in processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:])


def shortened(recipe: str, folder: Path, out: Path, hydra_dir: Path) -> list[str]:
    """The recipe as a user types it (its own tracking default included), pointed at a Hub-layout folder for every
    base, on the CPU with a few small pages and one step a stage."""
    from dharma_train.cli.compose import compose_config

    composed = compose_config([f"recipe={recipe}"])
    overrides = [
        f"recipe={recipe}", f"output_dir={out}", f"hydra.run.dir={hydra_dir}", "trainer=cpu",
        "trainer.checkpoint_every=0", "data.synthetic.train_pages=8", "data.synthetic.eval_pages=2",
        "data.synthetic.general_pages=4", "data.synthetic.width=224", "data.synthetic.height=308",
        "model.min_pixels=3136", "model.max_pixels=50176", "evaluation.max_new_tokens=16", "evaluation.batch_size=4",
        f"model.path={folder}", *(f"ablation.bases.{base}.path={folder}" for base in composed.ablation.bases),
    ]
    for name, stage in composed.stages.items():
        if stage.kind in ("sft", "dpo"):
            overrides += [f"stages.{name}.optimization.{key}={value}"
                          for key, value in (("max_steps", 1), ("gradient_accumulation", 1), ("batch_size", 2))]
        if stage.kind == "dpo":
            overrides.append(f"stages.{name}.pairs=synthetic")
        if stage.kind == "grpo" and recipe == "nanonets_3b":  # the optional rung, switched on in one recipe
            overrides += [f"stages.{name}.enabled=true", f"stages.{name}.num_generations=2",
                          *(f"stages.{name}.optimization.{key}={value}" for key, value in
                            (("max_steps", 1), ("gradient_accumulation", 1), ("batch_size", 2)))]
        if stage.kind == "quantize":
            overrides += [f"stages.{name}.calibration_pages=8", f"stages.{name}.min_calibration_pages=8",
                          f"stages.{name}.group_size=32"]
    return overrides


REAL_RECIPES = ["nanonets_3b", "qwen25vl_3b", "olmocr2_7b", "qwen25vl_7b", "ablation_3b", "ablation_7b"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", REAL_RECIPES)
def test_each_real_recipe_runs_end_to_end_on_a_hub_layout_folder_with_its_own_tracking(recipe, folders, tmp_path):
    """Every real recipe, shortened, on a folder laid out like the Hub's (Qwen's token ids, stock template and
    preprocessor file, no processor_config.json), with the recipe's own tracking (wandb, offline without a key):
    every stage runs and the export keeps Qwen's tokenizer."""
    import os
    import subprocess

    from dharma_train.cli.compose import compose_config

    dense, _ = folders
    out = tmp_path / "run"
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}  # as a user has it
    done = subprocess.run([sys.executable, "-m", "dharma_train", *shortened(recipe, dense, out, tmp_path / "hydra")],
                          capture_output=True, text=True, timeout=900, env={**env, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    composed = compose_config([f"recipe={recipe}"])
    assert composed.tracking.backend == "wandb", "the recipe's own default is what runs here"
    bases = {name: set(base.get("skip") or []) for name, base in composed.ablation.bases.items()} or {None: set()}
    for base, skipped in bases.items():
        run = out / base if base else out
        stages = [name for name in composed.stages if name not in skipped
                  and (composed.stages[name].get("enabled", True) or recipe == "nanonets_3b")]
        summary = json.loads((run / "summary.json").read_text())
        assert [entry["stage"] for entry in summary["entries"]] == ["base", *stages[:-1]]
        assert [entry["stage"] for entry in summary["not_evaluated"]] == [stages[-1]] == ["export"]
        trained = [f"{index:02d}_{name}" for index, name in enumerate(stages, start=1)
                   if composed.stages[name].kind in ("sft", "dpo", "grpo")]
        assert all(list((run / folder / "wandb").glob("offline-run-*")) for folder in trained), trained
        exported = load_processor(str(run / f"{len(stages):02d}_export" / "model")).tokenizer
        assert exported.eos_token_id == 151645 and exported.convert_tokens_to_ids("<|image_pad|>") == 151655
        prompt = exported.apply_chat_template(prompt_messages("structured"), add_generation_prompt=True,
                                              tokenize=False)
        assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    if len(bases) > 1:
        assert (out / "comparison.md").is_file()
