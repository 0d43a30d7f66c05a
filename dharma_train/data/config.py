"""Which pages a run trains and evaluates on (config group `data`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SyntheticConfig:
    """Generated pages, used for any split whose folder is not given."""

    train_pages: int = 64
    eval_pages: int = 16
    seed: int = 0
    width: int = 224
    height: int = 308


@dataclass
class DataConfig:
    train: str | None = None  # a page folder (pages.jsonl + images); None: generate
    eval: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self):
        s = self.synthetic
        if s.train_pages < 1 or s.eval_pages < 1:
            raise ValueError("data.synthetic.train_pages and eval_pages must be at least 1")
        if s.width < 56 or s.height < 56:
            raise ValueError("data.synthetic.width and height must be at least 56 pixels")
