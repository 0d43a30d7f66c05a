"""Pages and preference pairs as the `datasets` rows TRL's trainers take (prompt/completion keeps loss on the answer)."""

from __future__ import annotations

from datasets import Dataset, Image, Sequence

from dharma_train.data.pages import PageSet
from dharma_train.data.pairs import PreferencePair
from dharma_train.data.prompts import prompt_messages, target_text


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def sft_dataset(pages: PageSet, task: str) -> Dataset:
    """Image + instruction -> answer rows; images stay paths and are decoded lazily by the collator."""
    rows = {
        "images": [[str(page.image)] for page in pages],
        "prompt": [prompt_messages(task) for _ in pages],
        "completion": [_assistant(target_text(page.answer, task)) for page in pages],
    }
    return Dataset.from_dict(rows).cast_column("images", Sequence(Image()))


def dpo_dataset(pairs: list[PreferencePair], task: str) -> Dataset:
    """Image + instruction with a chosen and a rejected answer."""
    rows = {
        "images": [[str(pair.image)] for pair in pairs],
        "prompt": [prompt_messages(task) for _ in pairs],
        "chosen": [_assistant(pair.chosen) for pair in pairs],
        "rejected": [_assistant(pair.rejected) for pair in pairs],
    }
    return Dataset.from_dict(rows).cast_column("images", Sequence(Image()))


def grpo_dataset(pages: PageSet, task: str) -> Dataset:
    """Image + instruction rows that name their page (`page_id`), so the reward terms score against its answer."""
    rows = {
        "images": [[str(page.image)] for page in pages],
        "prompt": [prompt_messages(task) for _ in pages],
        "page_id": [page.id for page in pages],
    }
    return Dataset.from_dict(rows).cast_column("images", Sequence(Image()))
