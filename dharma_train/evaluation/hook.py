"""The evaluation hook: one function, run on the base model and after every stage, that answers "did it help?"."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from dharma_train.data.pages import PageSet
from dharma_train.evaluation.generate import generate
from dharma_train.evaluation.metrics import aggregate, score_page
from dharma_train.files import write_jsonl_atomically


@dataclass
class EvalConfig:
    """How pages are generated and scored after each stage."""

    task: str = "structured"  # the final task: every stage is measured against it
    max_new_tokens: int = 512  # outputs reaching it count as token-limit hits
    batch_size: int = 8
    max_pages: int | None = None  # None: every evaluation page

    def __post_init__(self):
        if self.task not in ("structured", "plain"):
            raise ValueError(f"evaluation.task must be 'structured' or 'plain', got {self.task!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("evaluation.max_new_tokens and evaluation.batch_size must be at least 1")


def evaluate(model, processor, pages: PageSet, config: EvalConfig, output_dir: str | Path | None = None,
             progress: bool = True) -> dict:
    """Generate on the pages, score them, and (given a folder) keep every output in predictions.jsonl."""
    selected = pages.pages[: config.max_pages] if config.max_pages else pages.pages
    generations, seconds = generate(model, processor, selected, config.task, config.max_new_tokens,
                                    config.batch_size, progress=progress)
    scores = [score_page(page.id, page.family, g.text, page.answer, g.hit_token_limit, g.new_tokens)
              for page, g in zip(selected, generations)]
    metrics = aggregate(scores)
    new_tokens = sum(g.new_tokens for g in generations)
    metrics.update({
        "seconds": seconds,
        "pages_per_second": len(selected) / seconds if seconds else 0.0,
        "new_tokens_per_second": new_tokens / seconds if seconds else 0.0,
    })
    if output_dir is not None:
        write_jsonl_atomically(Path(output_dir) / "predictions.jsonl",
                               ({**asdict(score), "output": g.text} for score, g in zip(scores, generations)))
    return metrics
