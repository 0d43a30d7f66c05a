"""Which pages a run trains and evaluates on (config group `data`)."""

from __future__ import annotations

from dataclasses import dataclass, field

FORMATS = ("auto", "pages", "jsonl", "parquet", "dataset", "sidecar")  # see dharma_train/data/sources/
DEFAULT_MAX_PIXELS = 12_845_056  # Qwen2.5-VL's processor default (16384 patches of 28 x 28 pixels)
DEFAULT_PDF_DPI = 150  # an A4 PDF page becomes 1240 x 1754 pixels: about 2,800 Qwen2.5-VL image tokens
MIN_PDF_DPI, MAX_PDF_DPI = 36, 1200  # below 36 dpi body text is a few pixels high; 1200 is a scanner's maximum
DEFAULT_MAX_SKIPPED_SHARE = 0.5  # a source losing more of its rows stops the run: what is left does not stand for it


@dataclass
class SyntheticConfig:
    """Generated pages (dharma_train.data.synthetic.generate): any split whose folder is not given, and the generated
    sets a stage can name as its `data` (`general`: mixed-language Markdown pages for the general-OCR rung)."""

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
    min_body_px: dict[str, int] | None = None  # body-type floor in px per family (general too); None: none

    def __post_init__(self):
        from dharma_train.data.synthetic.generate import ALL_FAMILIES

        unknown = sorted(set(self.families) - set(ALL_FAMILIES))
        if not self.families or unknown:
            raise ValueError(f"data.synthetic.families must name some of {list(ALL_FAMILIES)}, got {self.families}")
        floors = self.min_body_px or {}
        if set(floors) - set(ALL_FAMILIES) or any(px < 0 for px in floors.values()):
            raise ValueError(f"data.synthetic.min_body_px: a floor >= 0 per family of {list(ALL_FAMILIES)}, "
                             f"got {dict(self.min_body_px)}")
        if min(self.max_words, self.general_pages, self.general_max_words, self.workers) < 1:
            raise ValueError("data.synthetic.max_words, general_pages, general_max_words and workers must be >= 1")


@dataclass
class SplitConfig:
    """Fractions of `data.train` held out as the eval and test splits, cut by image hash (docs/data-loading.md)."""

    eval: float = 0.0
    test: float = 0.0
    seed: int = 0


@dataclass
class DataConfig:
    train: str | None = None  # a page folder, parquet, JSONL, dataset... (docs/data-loading.md); None: generate
    eval: str | None = None
    test: str | None = None  # held out: checked and saved to data/loaded/test, never trained or evaluated on
    format: str = "auto"  # auto | pages | jsonl | parquet | dataset | sidecar
    strict: bool = False  # fail on the first bad row instead of skipping and reporting it
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger loaded images are scaled down to this (counted as fixed)
    pdf_dpi: int = DEFAULT_PDF_DPI  # PDF pages are rendered at this resolution, or lower to fit max_pixels
    max_skipped_share: float = DEFAULT_MAX_SKIPPED_SHARE  # a source losing more of its rows (bad rows, leaks) stops
    split: SplitConfig = field(default_factory=SplitConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self):
        self.check_sources()
        s = self.synthetic
        if s.train_pages < 1 or s.eval_pages < 1:
            raise ValueError("data.synthetic.train_pages and eval_pages must be at least 1")
        if s.width < 56 or s.height < 56:
            raise ValueError("data.synthetic.width and height must be at least 56 pixels")

    def check_sources(self) -> None:
        """The loader options, checked at start-up; each message names its key."""
        if self.format not in FORMATS:
            raise ValueError(f"data.format must be one of {list(FORMATS)}, got {self.format!r}")
        if self.max_pixels < 28 * 28:
            raise ValueError(f"data.max_pixels must be at least {28 * 28} (one 28 x 28 patch), got {self.max_pixels}")
        if not 0 <= self.max_skipped_share <= 1:
            raise ValueError(f"data.max_skipped_share must be a share in [0, 1] (1: never stop), got "
                             f"{self.max_skipped_share}")
        if not MIN_PDF_DPI <= self.pdf_dpi <= MAX_PDF_DPI:
            raise ValueError(f"data.pdf_dpi must be between {MIN_PDF_DPI} and {MAX_PDF_DPI}, got {self.pdf_dpi}")
        split = self.split
        for name in ("eval", "test"):
            fraction = getattr(split, name)
            if not 0 <= fraction < 1:
                raise ValueError(f"data.split.{name} must be a fraction in [0, 1), got {fraction}")
            if fraction > 0 and not self.train:
                raise ValueError(f"data.split.{name} carves pages out of data.train, which is not set")
            if fraction > 0 and getattr(self, name):
                raise ValueError(f"data.split.{name} and data.{name} both give the {name} split; set one")
        if split.eval + split.test >= 1:
            raise ValueError(f"data.split.eval + data.split.test must leave pages for training, got "
                             f"{split.eval + split.test}")
