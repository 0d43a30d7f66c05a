"""Loop-aware early stop: a page whose new tokens end in one unit repeated many times is stopped there.

The detector works on token ids as they come, with the periodic-suffix test of `degeneration.tail_loop`, at two
bars. A unit that reads as text (two different words, one of two letters: `degeneration.wordy`) stops once it has
repeated `text_repeats` times over at least `text_min_tokens` tokens: a line-level loop is stopped after tens of
tokens. When the page's reference is known (evaluation, mining), that unit must also repeat more than twice as often
as the reference holds it, the exemption `degeneration.closed_loop` gives, so a blank sign-up sheet of identical
rows runs to its end. Any other unit (ruled lines, empty cells, one word repeated) needs the high bar, `min_repeats`
over at least `min_tokens` tokens, since legitimate pages hold long runs of those. A stopped page is scored on its
projection: the loop's unit repeated, in phase, up to the token bound, the text the page would have ended with had
it run to the bound while the loop held, so its degeneration verdict is the one a full-length run gives;
`tests/evaluation/test_loop_stop.py` checks that on full-length generations and on legitimately repetitive pages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dharma_train.evaluation.degeneration import loop_words, wordy


@dataclass(frozen=True)
class LoopStop:
    """When a token stream counts as a confirmed loop (config `evaluation.loop_stop_*`, `mining.loop_stop_*`)."""

    max_period: int = 128  # longest unit, in tokens
    text_repeats: int = 8  # a unit that reads as text stops after this many repeats
    text_min_tokens: int = 32  # ... spanning at least this many tokens
    min_tokens: int = 512  # any other unit: the repeated suffix must span at least this many tokens
    min_repeats: int = 12  # and hold the unit at least this many times
    check_every: int = 8  # tokens between two checks of one page

    def __post_init__(self):
        settings = (self.max_period, self.text_repeats, self.text_min_tokens, self.min_tokens, self.min_repeats,
                    self.check_every)
        if min(settings) < 1:
            raise ValueError(f"loop_stop_* settings must be at least 1, got {settings}")
        if self.text_repeats < 2:
            raise ValueError(f"loop_stop_repeats must be at least 2 (one occurrence is no repeat), got "
                             f"{self.text_repeats}")


def stop_rule(enabled: bool, repeats: int, max_pattern_tokens: int) -> LoopStop | None:
    """The rule a config's `loop_stop`, `loop_stop_repeats` and `loop_stop_max_pattern_tokens` ask for."""
    return LoopStop(max_period=max_pattern_tokens, text_repeats=repeats) if enabled else None


def loop_text(text: str) -> str:
    """Text as the loop stop compares it (the loop detector's words, one space apart); a page's reference once."""
    return " ".join(loop_words(text))


def loop_period(tokens: list[int] | np.ndarray, rule: LoopStop, decode: Callable[[list[int]], str] | None = None,
                reference: str | None = None) -> int:
    """The period of the confirmed loop the tokens end in, or 0 when they do not end in one.

    decode turns token ids into text; without it only the high bar applies. reference: the page's expected output
    as `loop_text` gives it (made once per page, not at every check), whose own repetition excuses as much."""
    window = max(rule.min_tokens, rule.min_repeats * rule.max_period, rule.text_repeats * rule.max_period)
    tail = np.asarray(tokens[-window:], dtype=np.int64)[::-1]
    lowest_span, lowest_repeats = min(rule.text_min_tokens, rule.min_tokens), min(rule.text_repeats, rule.min_repeats)
    if tail.size < lowest_span:
        return 0
    tried: list[int] = []
    candidates = np.flatnonzero(tail[1:rule.max_period + 1] == tail[0]) + 1  # a unit's last token, one unit back
    for period in candidates.tolist():
        needed = max(lowest_span, lowest_repeats * period)
        if needed > tail.size:
            break
        if any(period % shorter == 0 for shorter in tried):
            continue  # a multiple of a unit already judged: the same text, fewer repeats
        # the suffix has period p over `needed` tokens iff token i equals token i + p for the first needed - p
        if not np.array_equal(tail[:needed - period], tail[period:needed]):
            continue
        tried.append(period)
        span = _periodic_span(tail, period)
        if span >= max(rule.min_tokens, rule.min_repeats * period):
            return period
        if decode is not None and _text_loop(tail[:period][::-1].tolist(), span // period, span, rule, decode,
                                             reference):
            return period
    return 0


def _periodic_span(reversed_tail: np.ndarray, period: int) -> int:
    """How many tokens at the end of the stream hold the period."""
    mismatches = np.flatnonzero(reversed_tail[:-period] != reversed_tail[period:])
    return period + int(mismatches[0]) if mismatches.size else int(reversed_tail.size)


def _text_loop(unit: list[int], repeats: int, span: int, rule: LoopStop, decode: Callable[[list[int]], str],
               reference: str | None) -> bool:
    """A unit that reads as text, repeated past the low bar and past what the reference itself repeats."""
    if repeats < rule.text_repeats or span < rule.text_min_tokens:
        return False
    words = loop_words(decode(unit))
    if not wordy(tuple(words)):
        return False
    return repeats > 2 * reference_repeats(" ".join(words), reference)


def reference_repeats(unit: str, reference: str | None) -> int:
    """How often the unit's words occur in the reference (`loop_text`; an upper bound on its longest run there)."""
    if not reference or not unit:
        return 0
    return reference.count(unit)


def project_to_bound(tokens: list[int], period: int, bound: int) -> list[int]:
    """The tokens continued with their last `period` tokens, in phase, up to `bound` tokens."""
    unit = tokens[-period:]
    projected = list(tokens)
    while len(projected) < bound:
        projected.append(unit[(len(projected) - len(tokens)) % period])
    return projected[:bound]


def replay_early_stop(tokens: list[int], bound: int, rule: LoopStop, decode: Callable[[list[int]], str] | None = None,
                      reference: str | None = None) -> tuple[int | None, list[int]]:
    """Replay a full-length generation through the detector: (where it would stop or None, the scored tokens);
    reference: the page's expected output, as written."""
    reference = loop_text(reference) if reference else None
    for length in range(rule.check_every, len(tokens) + 1, rule.check_every):
        period = loop_period(tokens[:length], rule, decode, reference)
        if period:
            return length, project_to_bound(tokens[:length], period, bound)
    return None, list(tokens)
