"""Saving a trained model as the next stage's input: written to a temporary folder, then renamed into place.

Under several processes rank 0 writes; when the model is sharded (FSDP2, ZeRO-3) every process first takes part in
gathering its full weights. Either way the result is a plain transformers folder that loads on one GPU.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from dharma_train import distributed
from dharma_train.artifact import ModelArtifact
from dharma_train.files import write_folder_atomically, write_json_atomically
from dharma_train.models.loading import DTYPES, is_quantized, load_model
from dharma_train.run_folder import STAGE_RECORD

log = logging.getLogger(__name__)


def save_from_trainer(trainer, processor, source: ModelArtifact, output_dir: Path, save: str,
                      dtype: str = "float32") -> ModelArtifact:
    """`save_trained` for a trained TRL trainer, on every process; all of them return the saved artifact.

    A sharded model is gathered by `Trainer.save_model` (FSDP2 full state dict, ZeRO-3 16-bit consolidation) into
    `gathered.tmp/` on rank 0, which reloads it as one plain model (merging a LoRA adapter onto its base) and
    saves it the usual way. Otherwise rank 0 already holds the whole model and saves it directly.
    """
    sharded = bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))
    if not sharded:
        return distributed.on_main(save_trained, trainer.model, processor, source, output_dir, save, dtype)
    gathered = output_dir / "gathered.tmp"
    log.info("gathering the sharded model's full weights to rank 0")
    trainer.save_model(str(gathered))  # a collective: every process must call it
    _stop_partitioned_loading()
    return distributed.on_main(_save_gathered, gathered, processor, source, output_dir, save, dtype)


def _stop_partitioned_loading() -> None:
    """While a ZeRO-3 trainer's arguments are alive, transformers builds every model it loads partitioned
    (zero.Init: each parameter an empty local shard), so the gathered weights would be reloaded, and saved, as empty
    tensors. Loading and saving here turn that off; it stays off for the next stage, whose own trainer arguments
    turn it on again for its own training."""
    from transformers.integrations import deepspeed

    deepspeed.unset_hf_deepspeed_config()


def _save_gathered(gathered: Path, processor, source: ModelArtifact, output_dir: Path, save: str,
                   dtype: str) -> ModelArtifact:
    from dharma_train.models.loading import load_model

    if (gathered / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_model(source, dtype=dtype)
        model = PeftModel.from_pretrained(base, str(gathered))
    else:
        model = load_model(ModelArtifact(path=str(gathered)), dtype=dtype)
    artifact = save_trained(model, processor, source, output_dir, save, dtype)
    shutil.rmtree(gathered, ignore_errors=True)
    return artifact
from dharma_train.training.resources import check_free_disk, tensor_bytes


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
    empty = [name for name, parameter in model.named_parameters() if parameter.numel() == 0]
    if empty:  # a partitioned (ZeRO-3) shard saved as if whole: the next stage could not load it
        raise RuntimeError(f"refusing to save {output_dir / 'model'}: {len(empty)} parameters are empty, "
                           f"e.g. {empty[0]} (a sharded model that was not gathered)")
    return ModelArtifact(path=str(_save_atomically(model, processor, output_dir / "model")))


def _save_atomically(model, processor, target: Path) -> Path:
    """Free disk checked first; then written whole beside `target` and swapped in (files.write_folder_atomically)."""
    adapter_only = hasattr(model, "peft_config")
    size = tensor_bytes(model, trainable_only=adapter_only)
    check_free_disk(target.parent, size, f"saving {target}")

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    return write_folder_atomically(target, write, needed_bytes=size)


def write_stage_record(output_dir: Path, record: dict) -> None:
    """stage.json: what the stage started from, its resolved config and its training metrics (rank 0 writes); paths
    inside the run are written relative to it."""
    from dharma_train.run_paths import run_relative

    if distributed.is_main():
        write_json_atomically(output_dir / STAGE_RECORD, run_relative(record, output_dir.parent))
