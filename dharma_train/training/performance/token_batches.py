"""Token-budget micro-batches: each one filled with pages up to a token budget, so every step does similar work.

Pages run from ~600 to ~6,000 tokens (image tokens plus the answer), so a fixed number of pages per batch makes
some steps four times the work of others, and the largest possible batch (what memory must be planned for) is far
above the typical one. With `trainer.performance.token_budget` the rows are shuffled once (the run's seed), laid
into micro-batches in that order, each closed before the row that would take it past the budget (a row longer than
the budget goes alone), and the batches' order is reshuffled every epoch. Counts come from the data before
training: image tokens from each image's size through the processor's own resize rule, text tokens from the chat
template the collator applies.

Loss and learning rate stay per token: each optimizer step's summed token loss is divided by the labelled tokens of
all of its micro-batches (`num_items_in_batch`, which the Trainer counts once told that TRL's SFT loss takes it),
whatever their sizes, and the schedule counts the batches the sampler yields. SFT only: DPO's loss is a mean per
preference pair, so a DPO stage keeps fixed batches (with a log line).

The sampler subclasses transformers' `BatchRebalanceSampler` only so that the Trainer passes it as a batch sampler
and keeps accelerate from sharding it again: it deals the batches to the processes itself.
"""

from __future__ import annotations

import io
import logging
import math

import torch
from transformers.trainer_pt_utils import BatchRebalanceSampler

log = logging.getLogger(__name__)

ANSWER_COLUMNS = ("completion", "chosen", "rejected")  # each is one sequence through the model with the prompt


class TokenBudgetSampler(BatchRebalanceSampler):
    """Batches of row indices whose token counts sum to at most `budget` (a longer row alone); this process's share."""

    def __init__(self, lengths: list[int], budget: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.lengths, self.budget, self.seed, self.epoch = list(lengths), budget, seed, 0
        self.rank, self.world_size = rank, world_size
        self.batches = pack(self.lengths, budget, torch.randperm(len(lengths), generator=_generator(seed)).tolist())
        self.per_process = len(self.batches) // world_size  # equal step counts on every process

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(len(self.batches), generator=_generator(self.seed + 1 + self.epoch)).tolist()
        mine = order[self.rank::self.world_size][:self.per_process]
        return iter([self.batches[i] for i in mine])

    def __len__(self) -> int:
        return self.per_process

    def largest(self) -> list[int]:
        """The batch with the most tokens: what start-up memory planning must fit."""
        return max(self.batches, key=lambda batch: sum(self.lengths[i] for i in batch))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pack(lengths: list[int], budget: int, order: list[int]) -> list[list[int]]:
    """Rows in `order` laid into batches, each closed before the row that would take it past `budget`."""
    batches, current, tokens = [], [], 0
    for index in order:
        if current and tokens + lengths[index] > budget:
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += lengths[index]
    if current:
        batches.append(current)
    return batches


def row_tokens(dataset, processor) -> list[int]:
    """Tokens each row puts through the model: the chat-templated prompt with each answer column, images expanded."""
    from datasets import Image, Sequence

    answers = [column for column in ANSWER_COLUMNS if column in dataset.column_names]
    if "prompt" not in dataset.column_names or not answers:
        raise ValueError(f"token_budget needs prompt and {' or '.join(ANSWER_COLUMNS)} columns; the training data has "
                         f"{dataset.column_names}")
    images = dataset.cast_column("images", Sequence(Image(decode=False)))["images"] \
        if "images" in dataset.column_names else [[] for _ in range(len(dataset))]
    counts = []
    for row, row_images in zip(dataset.select_columns(["prompt", *answers]), images):
        image_tokens = sum(_image_tokens(processor, image) for image in row_images)
        text = [_text_tokens(processor, row["prompt"] + row[column]) for column in answers]
        counts.append(sum(text) + len(answers) * (image_tokens - len(row_images)))  # each placeholder is one token
    return counts


def _image_tokens(processor, image: dict) -> int:
    """Merged image tokens after the processor's resize, from the image's header alone."""
    from PIL import Image as PILImage

    source = image.get("path") if image.get("bytes") is None else io.BytesIO(image["bytes"])
    with PILImage.open(source) as opened:
        width, height = opened.size
    image_processor = processor.image_processor
    return image_processor.get_number_of_image_patches(height, width) // image_processor.merge_size ** 2


def _text_tokens(processor, messages: list[dict]) -> int:
    text = processor.apply_chat_template(messages, tokenize=False)
    return len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])


def resolved_budget(setting: str, lengths: list[int], batch_size: int) -> int | None:
    """Tokens per micro-batch: a number as given; auto: `batch_size` rows of the mean length; off: None."""
    if setting == "off":
        return None
    if setting == "auto":
        return math.ceil(batch_size * sum(lengths) / max(len(lengths), 1))
    return int(setting)


def planned_budget(settings) -> str:
    """trainer.performance.token_budget as it applies here: auto is off on a CPU, like the other speed-ups."""
    setting = str(settings.performance.token_budget)
    return "off" if setting == "auto" and settings.resolved_device() != "cuda" else setting


def use_token_budget(trainer, settings) -> TokenBudgetSampler | None:
    """Make the trainer's training loader yield token-budget micro-batches; None when the budget is off."""
    lengths = budget_lengths(trainer, settings)
    if lengths is None:
        return None
    budget = resolved_budget(planned_budget(settings), lengths, trainer.args.per_device_train_batch_size)
    return install_sampler(trainer, settings, lengths, budget)


def budget_lengths(trainer, settings) -> list[int] | None:
    """Each training row's tokens where a token budget applies (SFT, token_budget not off here); else None."""
    from trl import SFTTrainer

    if planned_budget(settings) == "off":
        return None
    if not isinstance(trainer, SFTTrainer):
        log.warning("token_budget: off for %s, whose loss is a mean per preference pair rather than per token",
                    type(trainer).__name__)
        return None
    return row_tokens(trainer.train_dataset, trainer.processing_class)


def install_sampler(trainer, settings, lengths: list[int], budget: int,
                    accumulation: int = 1) -> TokenBudgetSampler:
    """Micro-batches of `budget` tokens for the trainer's training loader; `accumulation` times the configured
    gradient accumulation (the joint planner's smaller budgets keep the tokens of an optimizer step)."""
    # Qwen2.5-VL declares accepts_loss_kwargs=False (for its own loss), so the Trainer would average micro-batch
    # means; TRL's SFT loss divides by num_items_in_batch, the step's labelled tokens, once the Trainer counts them.
    trainer.model_accepts_loss_kwargs = True
    sampler = TokenBudgetSampler(lengths, budget, settings.seed, rank=trainer.args.process_index,
                                 world_size=max(1, trainer.args.world_size))
    trainer._get_train_sampler = lambda *args, **kwargs: sampler  # the Trainer's own hook, per instance
    trainer.args.gradient_accumulation_steps *= accumulation
    sizes = [len(batch) for batch in sampler.batches]
    log.info("token_budget %d tokens: %d micro-batches of %d to %d rows (a fixed batch of %d makes %d); rows of "
             "%d to %d tokens", budget, len(sampler.batches), min(sizes), max(sizes),
             trainer.args.per_device_train_batch_size,
             math.ceil(len(lengths) / trainer.args.per_device_train_batch_size), min(lengths), max(lengths))
    return sampler
