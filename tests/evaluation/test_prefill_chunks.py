"""The prompt-token budget of a step: whole prompts while they fit, the next cut at the budget, slot order."""

from __future__ import annotations

import torch

from dharma_train.evaluation.prefill_chunks import PendingPrompt, next_chunks


def _prompt(slot: int, length: int, written: int = 0) -> PendingPrompt:
    return PendingPrompt(page=slot, slot=slot, bound=8, reference=None, start=0.0,
                         input_ids=torch.zeros(length, dtype=torch.long), embeds=torch.zeros(length, 4),
                         positions=torch.zeros(3, length, dtype=torch.long), rope_delta=0, written=written)


def _plan(pending, budget):
    return [(prompt.slot, start, length) for prompt, start, length in next_chunks(pending, budget)]


def test_prompts_fill_the_budget_first_come_first_served_and_the_last_is_cut():
    pending = [_prompt(5, 10, written=4), _prompt(1, 7), _prompt(3, 9)]  # in the order they took their slots
    assert _plan(pending, 10) == [(1, 0, 4), (5, 4, 6)]  # slot 5's rest, then 4 of slot 1's 7; slot order
    assert _plan(pending, 6) == [(5, 4, 6)]
    assert _plan(pending, 3) == [(5, 4, 3)]


def test_a_budget_of_zero_writes_every_waiting_prompt_whole():
    pending = [_prompt(2, 10, written=9), _prompt(0, 300)]
    assert _plan(pending, 0) == [(0, 0, 300), (2, 9, 1)]


def test_planning_does_not_move_the_prompts_on():
    pending = [_prompt(0, 10)]
    next_chunks(pending, 4)
    assert pending[0].written == 0
