"""Which pages a run trains and evaluates on (config group `data`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SyntheticConfig:
    """Generated pages (dharma_train.data.synthetic): any split whose folder is not given, and the generated sets
    a stage can name as its `data` (`general`: mixed-language Markdown pages for the general-OCR rung)."""

    train_pages: int = 64
    eval_pages: int = 16
    seed: int = 0
    width: int = 224
    height: int = 308
    families: list[str] = field(default_factory=lambda: ["printed", "handwritten", "legal"])
    max_words: int = 40  # body words per page at most (handwritten pages get three quarters)
    general_pages: int = 64  # pages of the `general` set, generated only when a stage's data names it
    general_max_words: int = 20  # their word budget (other languages cost a Portuguese tokenizer more tokens)
    workers: int = 1  # processes drawing pages; the pages are the same bytes whatever the number

    def __post_init__(self):
        from dharma_train.data.synthetic import ALL_FAMILIES

        unknown = sorted(set(self.families) - set(ALL_FAMILIES))
        if not self.families or unknown:
            raise ValueError(f"data.synthetic.families must name some of {list(ALL_FAMILIES)}, got {self.families}")
        if min(self.max_words, self.general_pages, self.general_max_words, self.workers) < 1:
            raise ValueError("data.synthetic.max_words, general_pages, general_max_words and workers must be >= 1")


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
