"""The CTC reader's resumable checkpoint: small enough to come back from a 10-minute GPU call, call after call.

Layout of a checkpoint folder:
- `model/`: a plain Qwen2.5-VL checkpoint (safetensors shards of at most 15 MB, config, tokenizer, processor)
  that transformers loads without dharma_train; no CTC weights in it;
- `ctc_head.safetensors`: the CTC head, for resuming only;
- `state.json`: the global step, the phases, the shape, the head's frames per column, every call's arguments.
A checkpoint whose model is the one shipped in the package keeps no `model/` copy: its state.json's `model_dir`
names that folder (relative to the repository root), so the repository holds the weights once.
The optimizer state is not kept (it would double the size): a resumed run rebuilds it behind a short warm-up.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SHARD = "15MB"  # under the 16 MiB a file may have to come back from the GPU machine


def save(folder: Path, model, processor, head, state: dict) -> None:
    """Write the three parts; the model's weights in fp32 shards, whatever the training's autocast."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for old in (folder / "model").glob("model*.safetensors*"):
        old.unlink()
    model.save_pretrained(folder / "model", max_shard_size=SHARD)
    processor.save_pretrained(folder / "model")
    save_file({name: tensor.detach().cpu().contiguous() for name, tensor in head.state_dict().items()},
              str(folder / "ctc_head.safetensors"))
    (folder / "state.json").write_text(json.dumps(state, indent=2, ensure_ascii=False))


def load(folder: Path, device):
    """(model, processor, head, state) from a checkpoint folder written by `save`."""
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    from dharma_train.models.processor import Qwen2_5_VLImageProcessor
    from scripts.experiments.tiny_reader.reader_ctc import CTCHead

    state = json.loads((folder / "state.json").read_text())
    model_dir = model_folder(folder, state)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    processor = Qwen2_5_VLImageProcessor.from_pretrained(model_dir)
    head = CTCHead(model.config.vision_config.hidden_size, state["frames_per_column"])
    head.load_state_dict(load_file(str(folder / "ctc_head.safetensors")))
    return model.to(device), processor, head.to(device), state


def model_folder(folder: Path, state: dict) -> Path:
    """The checkpoint's own `model/`, else the shipped folder its state names (`model_dir`, from the repository root)."""
    if (folder / "model").is_dir():
        return folder / "model"
    if "model_dir" not in state:
        raise FileNotFoundError(f"{folder}: no model/ folder and no model_dir in state.json")
    shipped = Path(__file__).resolve().parents[3] / state["model_dir"]
    if not (shipped / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: state.json's model_dir {state['model_dir']} holds no model ({shipped})")
    return shipped
