"""Saving a trained model as the next stage's input: written to a temporary folder, then renamed into place."""

from __future__ import annotations

import shutil
from pathlib import Path

from dharma_train.artifact import ModelArtifact
from dharma_train.files import write_json_atomically
from dharma_train.models.loading import DTYPES, is_quantized, load_model


def save_trained(model, processor, source: ModelArtifact, output_dir: Path, save: str,
                 dtype: str = "float32") -> ModelArtifact:
    """LoRA models save `adapter/` and, unless save=adapter, merged full weights in `model/`; full FT saves `model/`.

    Full weights are stored in `dtype` (bf16 on a GPU run, even when trained with fp32 master weights).
    """
    if hasattr(model, "peft_config"):
        adapter_dir = _save_atomically(model, processor, output_dir / "adapter")
        if save == "adapter":
            return ModelArtifact(path=str(adapter_dir), base=source)
        # A 4-bit base (QLoRA) is merged at full precision: the saved adapter onto a freshly loaded base
        model = load_model(ModelArtifact(path=str(adapter_dir), base=source), dtype=dtype) if is_quantized(model) \
            else model.merge_and_unload()
    model = model.to(DTYPES[dtype])
    return ModelArtifact(path=str(_save_atomically(model, processor, output_dir / "model")))


def _save_atomically(model, processor, target: Path) -> Path:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def write_stage_record(output_dir: Path, record: dict) -> None:
    """stage.json: what the stage started from, its resolved config and its training metrics."""
    write_json_atomically(output_dir / "stage.json", record)
