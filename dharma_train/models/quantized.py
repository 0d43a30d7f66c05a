"""Quantized checkpoints: which method a saved folder uses, and whether this machine has the package that loads it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from dharma_train.errors import ModelUnavailableError

# config.json's quantization_config.quant_method -> (the module transformers needs to load it, how to install it)
LOADERS = {
    "compressed-tensors": ("compressed_tensors", "pip install 'dharma_train[quantize]'"),
    "bitsandbytes": ("bitsandbytes", "pip install 'bitsandbytes>=0.45'"),
}


def quantization_method(path: str | Path) -> str | None:
    """The quant_method a local model folder was saved with; None for full-precision weights or a hub id."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    return (json.loads(config.read_text()).get("quantization_config") or {}).get("quant_method")


def require_loader(path: str | Path) -> str | None:
    """The folder's quant_method, or ModelUnavailableError when the package that loads it is missing."""
    method = quantization_method(path)
    if method is None:
        return None
    if method not in LOADERS:
        raise ModelUnavailableError(f"model folder {path} is quantized with {method!r}, which dharma_train does not "
                                    f"load; known: {sorted(LOADERS)}")
    module, install = LOADERS[method]
    if importlib.util.find_spec(module) is None:
        raise ModelUnavailableError(f"model folder {path} is quantized with {method}; loading it needs the "
                                    f"{module} package: {install}")
    return method
