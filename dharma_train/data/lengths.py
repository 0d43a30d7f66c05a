"""A row's sequence length bounded at load time: image tokens + instruction + answer against the maximum length.

A 52-million-character answer once passed every check and grew the first training step to 21 GB. Each row is now
measured before any model loads, and cheaply: a text of n UTF-8 bytes has at most n tokens (every token of a byte-
level vocabulary covers a byte or more) and at least n characters / the vocabulary's longest entry; the tokenizer
runs only on the rare row between those bounds, whose length the upper bound itself keeps small. The image's
tokens come from its size alone, resized as the Qwen2.5-VL processor does (smart_resize).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from dharma_train.data.validation import RowProblem

SPECIAL_SLACK = 2  # tokens that a text may gain where it meets the template (an end marker, a merge undone)


@dataclass(frozen=True)
class LengthBound:
    """What a row's length is checked against, and what the model's processor makes of an image and a text."""

    max_length: int  # tokens a training sequence may hold (model.max_length, or the model's own limit)
    setting: str  # where max_length came from, for the message
    prompt_tokens: int  # the chat template with the longest instruction, without the image's tokens and the answer
    factor: int  # pixels per image-token side: patch size x merge size (28 for Qwen2.5-VL)
    min_pixels: int
    max_pixels: int
    longest_entry: int  # characters of the vocabulary's longest entry
    count: Callable[[str], int]  # the tokenizer's exact count, run only between the cheap bounds
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False)  # rows are checked on threads

    def image_tokens(self, width: int, height: int) -> int:
        resized_height, resized_width = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return (resized_height // self.factor) * (resized_width // self.factor)

    def check(self, texts: tuple[str, ...], image: Path) -> None:
        """RowProblem('overlong') when the image's tokens, the instruction and the longest of `texts` (a page's
        answer as each task renders it, or a pair's chosen and rejected) exceed max_length."""
        with Image.open(image) as opened:  # the header only: no pixel is decoded
            width, height = opened.size
        fixed = self.prompt_tokens + self.image_tokens(width, height) + SPECIAL_SLACK
        for text in sorted(texts, key=len, reverse=True):
            if fixed + len(text.encode("utf-8")) <= self.max_length:
                continue  # at most one token per byte: fits without tokenizing
            least = math.ceil(len(text) / self.longest_entry)
            if fixed + least > self.max_length:
                raise self._problem(fixed, f"at least {least}", len(text))
            with self.lock:
                tokens = self.count(text)
            if fixed + tokens > self.max_length:
                raise self._problem(fixed, str(tokens), len(text))

    def _problem(self, fixed: int, answer_tokens: str, characters: int) -> RowProblem:
        return RowProblem("overlong", f"image and instruction take {fixed} tokens and the answer {answer_tokens} "
                                      f"({characters:,} characters), over the maximum sequence length "
                                      f"{self.max_length} ({self.setting})")


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The size Qwen2.5-VL's processor gives an image: sides rounded to `factor`, the area within the budget."""
    resized_height = max(factor, round(height / factor) * factor)
    resized_width = max(factor, round(width / factor) * factor)
    if resized_height * resized_width > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        resized_height = max(factor, math.floor(height / beta / factor) * factor)
        resized_width = max(factor, math.floor(width / beta / factor) * factor)
    elif resized_height * resized_width < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        resized_height = math.ceil(height * beta / factor) * factor
        resized_width = math.ceil(width * beta / factor) * factor
    return resized_height, resized_width


def length_bound(model) -> LengthBound:
    """The bound for a run's model config (`model.path`, its pixel budget, `model.max_length`), from the model's
    processor and config.json; loads no weights."""
    from dharma_train.data.prompts import PROMPTS, prompt_messages
    from dharma_train.models.config import embedded_dir
    from dharma_train.models.loading import load_processor

    location = embedded_dir(model.path)
    processor = load_processor(location, model.min_pixels, model.max_pixels)
    tokenizer = processor.tokenizer
    image = processor.image_processor
    longest_task = max(PROMPTS, key=lambda task: len(PROMPTS[task]))
    empty_answer = [{"role": "assistant", "content": [{"type": "text", "text": ""}]}]
    template = processor.apply_chat_template(prompt_messages(longest_task) + empty_answer, tokenize=False)
    prompt_tokens = len(tokenizer(template, add_special_tokens=False)["input_ids"])
    limit, setting = (model.max_length, "model.max_length") if model.max_length is not None \
        else (model_limit(location), "the model's max_position_embeddings; set model.max_length to bound it lower")
    return LengthBound(max_length=limit, setting=setting, prompt_tokens=prompt_tokens,
                       factor=image.patch_size * image.merge_size, min_pixels=image.size["shortest_edge"],
                       max_pixels=image.size["longest_edge"],
                       longest_entry=max(len(entry) for entry in tokenizer.get_vocab()),
                       count=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]))


def model_limit(location: str) -> int:
    """The longest sequence the model's positions reach (its language model's max_position_embeddings)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(location)
    text = getattr(config, "text_config", None) or config
    return int(getattr(text, "max_position_embeddings", None) or config.max_position_embeddings)
