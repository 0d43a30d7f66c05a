"""Loading models and processors from artifacts, and failing early and clearly when a hub model is out of reach."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from dharma_train.artifact import ModelArtifact
from dharma_train.console import silenced_bars
from dharma_train.errors import ModelUnavailableError
from dharma_train.models.config import ModelConfig
from dharma_train.models.processor import Qwen2_5_VLImageProcessor
from dharma_train.models.quantized import require_loader, use_int4_kernels

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_available(artifact: ModelArtifact, setting: str = "model.path") -> None:
    """Raise ModelUnavailableError unless every folder or hub id the artifact needs can be loaded now; `setting`,
    the key that names the model (an ablation base's is `ablation.bases.NAME.path`), is the one the fix advises."""
    if artifact.base is not None:
        check_available(artifact.base, setting)
    path = artifact.path
    if Path(path).is_dir():
        marker = "adapter_config.json" if artifact.is_adapter else "config.json"
        if not (Path(path) / marker).is_file():
            raise ModelUnavailableError(f"model folder {path} has no {marker}")
        require_loader(path)
        return
    if not HUB_ID.fullmatch(path):
        raise ModelUnavailableError(f"model folder {path} does not exist")
    _check_hub_model(path, setting)


def _check_hub_model(repo_id: str, setting: str) -> None:
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        return
    how_to_fix = (f"Download it where the Hub is reachable (`hf download {repo_id}`) and copy the cache "
                  f"folder ({constants.HF_HUB_CACHE}) here, or point {setting} at a local folder.")
    if constants.HF_HUB_OFFLINE:
        raise ModelUnavailableError(
            f"model {repo_id} is not in the Hugging Face cache and HF_HUB_OFFLINE is set. {how_to_fix}")
    try:
        HfApi().model_info(repo_id, timeout=10)
    except Exception as error:  # network errors, 401/404: all mean the same thing here
        raise ModelUnavailableError(
            f"model {repo_id} is not in the Hugging Face cache and the Hub cannot be reached "
            f"({type(error).__name__}). {how_to_fix}") from None


def load_processor(location: str, min_pixels: int | None = None, max_pixels: int | None = None):
    """The artifact's processor, with the pixel budget applied.

    The image-only processor serves the tiny model, and any Qwen2.5-VL folder where torchvision (which the stock
    processor's video half needs) is not installed.
    """
    import importlib.util

    from transformers import AutoProcessor

    processor_class = _processor_class(Path(location))
    image_only = processor_class == Qwen2_5_VLImageProcessor.__name__ or (
        processor_class == "Qwen2_5_VLProcessor" and importlib.util.find_spec("torchvision") is None)
    if image_only:
        processor = Qwen2_5_VLImageProcessor.from_pretrained(location)
    else:
        processor = AutoProcessor.from_pretrained(location)
    size = dict(processor.image_processor.size)
    if min_pixels is not None:
        size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        size["longest_edge"] = max_pixels
    processor.image_processor.size = size
    processor.tokenizer.padding_side = "left"  # batched generation needs left padding
    return processor


def _processor_class(folder: Path) -> str | None:
    """The processor class a folder names: processor_config.json (saved by transformers 5), else
    preprocessor_config.json (the Hub's Qwen2.5-VL folders have only that one)."""
    for name in ("processor_config.json", "preprocessor_config.json"):
        file = folder / name
        if file.is_file():
            named = json.loads(file.read_text()).get("processor_class")
            if named:
                return named
    return None


def load_model(artifact: ModelArtifact, dtype: str = "float32", settings: ModelConfig | None = None,
               device: str | None = None, quantize_4bit: bool = False):
    """Full weights as one plain transformers model; adapter chains are loaded and merged into their base.

    quantize_4bit: the language model's linears in 4-bit NF4 (bitsandbytes), computing in `dtype`: QLoRA's frozen
    base. The vision tower and the LM head stay in `dtype`. Quantized folders (compressed-tensors, bitsandbytes)
    load through transformers too; bitsandbytes weights are placed at load time, since a 4-bit model cannot be
    moved with `.to()`.
    """
    from transformers import AutoModelForImageTextToText

    from dharma_train.models.vision_attention import use_varlen_vision_attention

    settings = settings or ModelConfig()
    if artifact.base is not None:
        from peft import PeftModel

        base = load_model(artifact.base, dtype=dtype, settings=settings, device=device, quantize_4bit=quantize_4bit)
        return PeftModel.from_pretrained(base, artifact.path).merge_and_unload()
    method = require_loader(artifact.path)
    # bitsandbytes quantizes as the weights reach their device, so a 4-bit model is placed at load time
    if quantize_4bit:
        placement = {"quantization_config": _nf4(dtype), "device_map": {"": device or _default_device()}}
    elif method == "bitsandbytes":
        placement = {"device_map": {"": device or _default_device()}}
    else:
        placement = {}
    model = AutoModelForImageTextToText.from_pretrained(
        artifact.path, dtype=DTYPES[dtype], attn_implementation=settings.attn_implementation, **placement)
    if settings.vision_attention == "varlen" and "flash" not in settings.attn_implementation:
        use_varlen_vision_attention(model)
    model = model.to(device) if device and not placement else model
    if method == "compressed-tensors" and next(model.parameters()).device.type == "cuda":
        use_int4_kernels(model, artifact.path)  # W4A16 decodes on the int4 kernel instead of decompressed weights
    elif method == "compressed-tensors":
        decompress_now(model)
    return model


def decompress_now(model) -> None:
    """compressed-tensors decompresses a loaded compressed model at its first forward (a pre-hook), drawing its
    "Decompressing model" bar inside the evaluation's own; the same work done here, at load, with that bar silenced.
    The hook is reached through torch's hook table: compressed-tensors keeps only its handle."""
    handle = getattr(model, "ct_decompress_hook", None)
    hook = model._forward_pre_hooks.get(handle.id) if handle is not None else None
    if hook is not None:
        with silenced_bars():
            hook(model, ())


def _default_device() -> str:
    return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"


def _nf4(dtype: str):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=DTYPES[dtype], llm_int8_skip_modules=["lm_head", "model.visual"])


def is_quantized(model) -> bool:
    """Loaded with a bitsandbytes (or other) quantization config, through any peft wrapper."""
    return getattr(getattr(model, "config", None), "quantization_config", None) is not None
