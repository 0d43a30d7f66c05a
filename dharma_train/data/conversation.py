"""Pages and preference pairs as the `datasets` rows TRL's trainers take (prompt/completion keeps loss on the answer)."""

from __future__ import annotations

from datasets import Dataset, Image, Sequence

from dharma_train.data.pages import PageSet
from dharma_train.data.pairs import PreferencePair
from dharma_train.data.prompts import prompt_messages, target_text

PAGE_KEY = "page"  # the key of a GRPO prompt's image block that names its page


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


def page_prompt(task: str, page_id: str) -> list[dict]:
    """The task's instruction with the page's id on its image block (chat templates ignore the key): TRL hands a
    rollout deep-copied prompts whose images no longer name their file, so the prompt names its page."""
    messages = prompt_messages(task)
    messages[0]["content"][0][PAGE_KEY] = page_id
    return messages


def prompt_page(prompt: list[dict]) -> str:
    """The page id a prompt carries (page_prompt)."""
    for message in prompt:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part.get("type") == "image" and part.get(PAGE_KEY):
                return part[PAGE_KEY]
    raise ValueError("a GRPO prompt names no page: its rows must come from grpo_dataset")


def grpo_dataset(pages: PageSet, task: str) -> Dataset:
    """Image + instruction rows that name their page (`page_id` for the reward terms, in the prompt for the
    rollout), so each answer is sampled from and scored against its own page."""
    rows = {
        "images": [[str(page.image)] for page in pages],
        "prompt": [page_prompt(task, page.id) for page in pages],
        "page_id": [page.id for page in pages],
    }
    return Dataset.from_dict(rows).cast_column("images", Sequence(Image()))
