"""Which model a run starts from and how it is loaded (config group `model`)."""

from __future__ import annotations

from dataclasses import dataclass

TINY = "tiny"


@dataclass
class ModelConfig:
    path: str = TINY  # a hub id, a local folder, or "tiny" for the embedded random-init model
    min_pixels: int | None = None  # pixel budget per page image; None keeps the processor's own
    max_pixels: int | None = None
    attn_implementation: str = "sdpa"
    vision_attention: str = "varlen"  # varlen: one kernel per vision layer on CUDA (models/vision_attention.py) | stock

    def __post_init__(self):
        if self.vision_attention not in ("varlen", "stock"):
            raise ValueError(f"model.vision_attention must be 'varlen' or 'stock', got {self.vision_attention!r}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"model.min_pixels ({self.min_pixels}) exceeds model.max_pixels ({self.max_pixels})")
