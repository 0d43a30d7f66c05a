"""Which prompt tokens the next step writes: the prompts of pages holding slots, first come first served, up to a
token budget a step.

vLLM's scheduler spends a step's token budget the same way: every live slot decodes its one token, and prompts take
the rest, whole while they fit and the next one cut where the budget ends (it goes on at the next step). Here the
budget counts prompt tokens only; the decode rows always ride along. A budget of 0 writes every waiting prompt in
one step: the decode rows then wait for all of them, as they did before prompts were chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PendingPrompt:
    """A page holding a slot while its prompt is written into the slot's cache rows."""

    page: int  # the page's index in the run
    slot: int
    bound: int  # its new-token bound
    reference: str | None  # its expected output in the loop detector's words (loop_text), if known
    start: float  # when it took the slot (perf_counter): its latency counts from here
    input_ids: torch.Tensor  # [length], on the model's device
    embeds: torch.Tensor  # [length, hidden]: token embeddings with the page's image features in place
    positions: torch.Tensor  # [3, length]: multimodal rope positions
    rope_delta: int  # what decode positions add after the prompt (images take fewer positions than tokens)
    written: int = 0  # prompt tokens already in the cache

    @property
    def length(self) -> int:
        return self.input_ids.shape[0]


def next_chunks(pending: list[PendingPrompt], budget: int) -> list[tuple[PendingPrompt, int, int]]:
    """(prompt, start, length) of what the next step writes, in slot order; 0 budget: every prompt's rest."""
    left = budget or sum(prompt.length - prompt.written for prompt in pending)
    planned = []
    for prompt in pending:
        if left <= 0:
            break
        length = min(prompt.length - prompt.written, left)
        planned.append((prompt, prompt.written, length))
        left -= length
    return sorted(planned, key=lambda item: item[0].slot)
