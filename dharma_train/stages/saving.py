"""Saving a trained model as the next stage's input: written to a temporary folder, then renamed into place."""

from __future__ import annotations

from pathlib import Path

from dharma_train.artifact import ModelArtifact
from dharma_train.files import write_folder_atomically, write_json_atomically
from dharma_train.models.loading import DTYPES
from dharma_train.resources import check_free_disk, tensor_bytes


def save_trained(model, processor, source: ModelArtifact, output_dir: Path, save: str,
                 dtype: str = "float32") -> ModelArtifact:
    """LoRA models save `adapter/` and, unless save=adapter, merged full weights in `model/`; full FT saves `model/`.

    Full weights are stored in `dtype` (bf16 on a GPU run, even when trained with fp32 master weights).
    """
    if hasattr(model, "peft_config"):
        adapter_dir = _save_atomically(model, processor, output_dir / "adapter")
        if save == "adapter":
            return ModelArtifact(path=str(adapter_dir), base=source)
        model = model.merge_and_unload()
    model = model.to(DTYPES[dtype])
    return ModelArtifact(path=str(_save_atomically(model, processor, output_dir / "model")))


def _save_atomically(model, processor, target: Path) -> Path:
    """Free disk checked first; then written whole beside `target` and swapped in (files.write_folder_atomically)."""
    adapter_only = hasattr(model, "peft_config")
    check_free_disk(target.parent, tensor_bytes(model, trainable_only=adapter_only), f"saving {target}")

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    return write_folder_atomically(target, write)


def write_stage_record(output_dir: Path, record: dict) -> None:
    """stage.json: what the stage started from, its resolved config and its training metrics."""
    write_json_atomically(output_dir / "stage.json", record)
