"""Which model a run starts from and how it is loaded (config group `model`)."""

from __future__ import annotations

from dataclasses import dataclass

TINY = "tiny"  # the embedded random-init model, built on first use (models/tiny.py): fast, reads nothing
TINY_READER = "tiny-reader"  # the embedded pretrained reader (models/tiny_reader/, its README says how it was made)
EMBEDDED = (TINY, TINY_READER)  # model paths that name a model shipped with the package, never the Hub


def embedded_dir(path: str) -> str:
    """The folder of an embedded model (`tiny` is built and cached on first use); any other path as it is."""
    if path == TINY:
        from dharma_train.models.tiny import tiny_model_dir

        return str(tiny_model_dir())
    if path == TINY_READER:
        from pathlib import Path

        return str(Path(__file__).parent / "tiny_reader")
    return path


@dataclass
class ModelConfig:
    path: str = TINY  # a hub id, a local folder, "tiny" (embedded, random-init) or "tiny-reader" (embedded, reads)
    min_pixels: int | None = None  # pixel budget per page image; None keeps the processor's own
    max_pixels: int | None = None
    attn_implementation: str = "sdpa"
    vision_attention: str = "varlen"  # varlen: one kernel per vision layer on CUDA (models/vision_attention.py) | stock
    # tokens a training sequence may hold (image + instruction + answer); longer pages and preference pairs are skipped
    # at load, and reported (data.strict: an error); None: the model's own limit (its max_position_embeddings)
    max_length: int | None = None

    def __post_init__(self):
        if self.vision_attention not in ("varlen", "stock"):
            raise ValueError(f"model.vision_attention must be 'varlen' or 'stock', got {self.vision_attention!r}")
        for key, pixels in (("min_pixels", self.min_pixels), ("max_pixels", self.max_pixels)):
            if pixels is not None and pixels < 1:
                raise ValueError(f"model.{key} must be >= 1 (pixels per page image), or null for the processor's own; "
                                 f"got {pixels}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"model.max_length must be >= 1 (tokens), or null for the model's own limit; got "
                             f"{self.max_length}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"model.min_pixels ({self.min_pixels}) exceeds model.max_pixels ({self.max_pixels})")
