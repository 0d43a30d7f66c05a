"""What rank 0 does with a sharded model's gathered weights (the folder `Trainer.save_model` writes under FSDP2 or
ZeRO-3): reload, merge a LoRA adapter, save plain bf16/fp32 weights that load with transformers alone."""

import torch
from transformers import AutoModelForImageTextToText

from dharma_train.models.loading import load_model, load_processor
from dharma_train.training.config import LoraSettings
from dharma_train.training.model_setup import lora_config
from dharma_train.training.saving import _save_gathered


def test_gathered_full_weights_become_a_plain_model_in_the_stage_dtype(tiny_artifact, tmp_path):
    model = load_model(tiny_artifact)
    model.save_pretrained(tmp_path / "gathered.tmp")  # what Trainer.save_model writes from a full state dict
    artifact = _save_gathered(tmp_path / "gathered.tmp", load_processor(tiny_artifact.path), tiny_artifact,
                              tmp_path, "merged", "bfloat16")
    assert artifact.path == str(tmp_path / "model") and not (tmp_path / "gathered.tmp").exists()
    saved = AutoModelForImageTextToText.from_pretrained(artifact.path)
    assert saved.dtype == torch.bfloat16
    reference = model.state_dict()
    for name, tensor in saved.state_dict().items():
        assert torch.equal(tensor, reference[name].to(torch.bfloat16)), name


def test_gathered_adapter_is_merged_onto_its_base_and_kept(tiny_artifact, tmp_path):
    from peft import get_peft_model

    peft_model = get_peft_model(load_model(tiny_artifact), lora_config(LoraSettings(r=4)))
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)  # a trained-looking adapter that changes the weights
    peft_model.save_pretrained(tmp_path / "gathered.tmp")
    artifact = _save_gathered(tmp_path / "gathered.tmp", load_processor(tiny_artifact.path), tiny_artifact,
                              tmp_path, "merged", "float32")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForImageTextToText.from_pretrained(artifact.path).state_dict()
    expected = peft_model.merge_and_unload().state_dict()
    assert merged.keys() == expected.keys()
    assert all(torch.allclose(merged[name], expected[name], atol=1e-6) for name in merged)


def test_a_model_with_empty_parameters_is_refused_instead_of_saved(tiny_artifact, tmp_path):
    """A ZeRO-3 shard reloaded as if whole has empty parameters; saved, the next stage fails to load it."""
    import pytest

    from dharma_train.training.saving import save_trained

    model = load_model(tiny_artifact)
    model.model.visual.patch_embed.proj.weight.data = torch.empty(0)
    with pytest.raises(RuntimeError, match=r"1 parameters are empty, e\.g\. model\.visual\.patch_embed\.proj\.weight"):
        save_trained(model, load_processor(tiny_artifact.path), tiny_artifact, tmp_path, "merged")
    assert not (tmp_path / "model").exists()


def test_gathered_weights_are_not_reloaded_partitioned_while_a_zero3_config_is_alive():
    """TrainingArguments with a ZeRO-3 config make transformers load every later model partitioned (zero.Init);
    the gathered weights must be reloaded whole (on a GPU run they were saved as empty tensors)."""
    from transformers.integrations import deepspeed

    from dharma_train.training.saving import _stop_partitioned_loading

    class ZeroThreeConfig:  # what transformers asks of the live config object
        def is_zero3(self):
            return True

    config = ZeroThreeConfig()
    deepspeed.set_hf_deepspeed_config(config)
    try:
        assert deepspeed.is_deepspeed_zero3_enabled()
        _stop_partitioned_loading()
        assert not deepspeed.is_deepspeed_zero3_enabled()
    finally:
        deepspeed.unset_hf_deepspeed_config()
