"""Loop-aware early stop: a page whose new tokens end in one unit repeated many times is stopped there.

The detector works on token ids as they come, the same periodic-suffix test as `degeneration.tail_loop` but on
tokens and with a much higher bar (by default a unit of up to 128 tokens repeated over at least 512 tokens and
at least 12 times), so a confirmed loop is one a greedy model does not leave. A stopped page is scored on its
projection: the loop's unit repeated, in phase, up to the token bound. That is the text the page would have ended
with had it run to the bound while the loop held, so its quality score and degeneration verdict are the ones a
full-length run gives; `tests/evaluation/test_loop_stop.py` checks that on full-length generations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LoopStop:
    """When a token stream counts as a confirmed loop (config `evaluation.loop_stop_*`)."""

    max_period: int = 128  # longest unit, in tokens
    min_tokens: int = 512  # the repeated suffix must span at least this many tokens
    min_repeats: int = 12  # and hold the unit at least this many times
    check_every: int = 16  # tokens between two checks of one page

    def __post_init__(self):
        if min(self.max_period, self.min_tokens, self.min_repeats, self.check_every) < 1:
            raise ValueError("evaluation.loop_stop_* settings must be at least 1")


def loop_period(tokens: list[int] | np.ndarray, rule: LoopStop) -> int:
    """The period of the confirmed loop the tokens end in, or 0 when they do not end in one."""
    window = max(rule.min_tokens, rule.min_repeats * rule.max_period)
    tail = np.asarray(tokens[-window:], dtype=np.int64)[::-1]
    if tail.size < rule.min_tokens:
        return 0
    for period in range(1, min(rule.max_period, tail.size // rule.min_repeats) + 1):
        needed = max(rule.min_tokens, rule.min_repeats * period)
        if needed > tail.size:
            break
        # the suffix has period p over `needed` tokens iff token i equals token i + p for the first needed - p
        if np.array_equal(tail[:needed - period], tail[period:needed]):
            return period
    return 0


def project_to_bound(tokens: list[int], period: int, bound: int) -> list[int]:
    """The tokens continued with their last `period` tokens, in phase, up to `bound` tokens."""
    unit = tokens[-period:]
    projected = list(tokens)
    while len(projected) < bound:
        projected.append(unit[(len(projected) - len(tokens)) % period])
    return projected[:bound]


def replay_early_stop(tokens: list[int], bound: int, rule: LoopStop) -> tuple[int | None, list[int]]:
    """Replay a full-length generation through the detector: (where it would stop or None, the scored tokens)."""
    for length in range(rule.check_every, len(tokens) + 1, rule.check_every):
        period = loop_period(tokens[:length], rule)
        if period:
            return length, project_to_bound(tokens[:length], period, bound)
    return None, list(tokens)
