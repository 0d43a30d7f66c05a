"""Repetition detectors behind the degeneration rate; `metrics.degeneration_reason` decides which ones apply.

Each detector answers one question on strings the caller has already read and normalized:

- `paper_degenerate`: DharmaOCR's definition. The cap was hit and the last 15 characters occur at least 4 times
  in a row at the very end.
- `tail_loop`: the cap was hit and the output ends in one unit of up to 200 characters repeated at least 4 times,
  over at least 32 characters (the paper's test misses periods longer than 15 characters or ragged cuts).
- `closed_loop`: a unit of 2 to 64 words repeated at least 8 times in a row anywhere: a loop that stopped on its
  own, so no cap is involved. The unit must hold two different words, one of them with at least two letters,
  so runs of ruled lines, empty cells or a single repeated word never count. When the reference is known, a run
  only counts if it repeats more than twice as often as the same unit does in the reference (blank sign-up
  sheets and tables of identical rows repeat legitimately).
- `furniture_repeat`: header, margin or footer text (at least 8 characters, with a letter) found at least 3 times
  in the body and at least 2 more times than in the reference body.

Loops are found on words after runs of one punctuation character are shortened to two ("_____" and "__" are the
same word), so a loop of ruled lines whose lengths wobble is still one unit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from itertools import islice

import numpy as np

_PUNCTUATION_RUN = re.compile(r"([^\w\s]|_)\1+")
_MAX_UNITS_CHECKED = 32  # distinct looping units compared with the reference per page; bounds pathological outputs


def paper_degenerate(text: str, hit_token_limit: bool, tail_chars: int = 15, min_repeats: int = 4) -> bool:
    """DharmaOCR's definition, kept exact so our rate compares with the published one."""
    if not hit_token_limit or len(text) < tail_chars * min_repeats:
        return False
    return text.endswith(text[-tail_chars:] * min_repeats)


def tail_loop(text: str, hit_token_limit: bool, min_repeats: int = 4, min_span: int = 32,
              max_period: int = 200, window: int = 2000) -> bool:
    """A run to the cap that ends in any repeated unit, not only a 15-character one."""
    if not hit_token_limit:
        return False
    lengths = _periodic_suffix_lengths(text[-window:], max_period)
    return any(length >= max(min_span, min_repeats * period) for period, length in lengths.items())


def repeating_tail(text: str, max_period: int = 200, window: int = 2000) -> tuple[int, int]:
    """(period, length) of the longest suffix repeated at least twice, for inspecting a loop; (0, 0) if none."""
    best_period, best_length = 0, 0
    for period, length in _periodic_suffix_lengths(text[-window:], max_period).items():
        if length >= 2 * period and length > best_length:
            best_period, best_length = period, length
    return best_period, best_length


def _periodic_suffix_lengths(text: str, max_period: int) -> dict[int, int]:
    """For each period p, how long the suffix with period p is; the Z-function of the reversed text, O(len)."""
    reversed_text = text[::-1]
    n = len(reversed_text)
    z = [0] * n
    left = right = 0
    last = min(max_period, n - 1)
    for i in range(1, last + 1):
        if i < right:
            z[i] = min(right - i, z[i - left])
        while i + z[i] < n and reversed_text[z[i]] == reversed_text[i + z[i]]:
            z[i] += 1
        if i + z[i] > right:
            left, right = i, i + z[i]
    return {period: period + z[period] for period in range(1, last + 1)}


def loop_words(text: str) -> list[str]:
    """Words as the loop detector compares them: punctuation runs shortened so ragged rules match."""
    return _PUNCTUATION_RUN.sub(r"\1\1", text).split()


def closed_loop(words: Sequence[str], reference_words: Sequence[str] | None = None, min_repeats: int = 8,
                max_unit: int = 64) -> bool:
    """A loop that needed no cap, unless the reference repeats the same unit at least half as often."""
    for unit, repeats in islice(repeated_units(words, min_repeats, max_unit), _MAX_UNITS_CHECKED):
        if reference_words is None or repeats > 2 * longest_run(reference_words, unit):
            return True
    return False


def repeated_units(words: Sequence[str], min_repeats: int = 8, max_unit: int = 64) -> Iterator[tuple[tuple, int]]:
    """(unit, repeats) of every run of a wordy unit repeated min_repeats times in a row; vectorized per unit length."""
    ids = _word_ids(words)
    for size in range(2, min(max_unit, len(ids) // min_repeats) + 1):
        same = ids[:-size] == ids[size:]  # same[i]: word i equals word i + size
        for start, length in _true_runs(same, (min_repeats - 1) * size):
            unit = tuple(words[start:start + size])
            if wordy(unit):
                yield unit, (length + size) // size


def longest_run(words: Sequence[str], unit: tuple) -> int:
    """How many times the unit occurs back to back at most in words."""
    size = len(unit)
    if len(words) < size:
        return 0
    codes = {word: index for index, word in enumerate(dict.fromkeys(unit))}
    ids = np.fromiter((codes.get(word, -1) for word in words), dtype=np.int64, count=len(words))
    match = np.ones(len(ids) - size + 1, dtype=bool)
    for offset, word in enumerate(unit):
        match &= ids[offset:len(ids) - size + 1 + offset] == codes[word]
    chain: dict[int, int] = {}
    for position in np.flatnonzero(match).tolist():
        chain[position] = chain.get(position - size, 0) + 1
    return max(chain.values(), default=0)


def furniture_repeat(body: str, furniture: Sequence[str], reference_body: str = "", min_repeats: int = 3,
                     min_chars: int = 8) -> bool:
    """Page furniture echoed through the body, the loop DharmaOCR names besides cap runs; short labels are exempt."""
    for text in dict.fromkeys(furniture):
        if len(text) < min_chars or not any(character.isalpha() for character in text):
            continue
        count = body.count(text)
        if count >= min_repeats and count >= reference_body.count(text) + 2:
            return True
    return False


def _word_ids(words: Sequence[str]) -> np.ndarray:
    """Words as integers so runs are found with array comparisons instead of Python loops."""
    vocabulary: dict[str, int] = {}
    return np.fromiter((vocabulary.setdefault(word, len(vocabulary)) for word in words), dtype=np.int64,
                       count=len(words))


def _true_runs(flags: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """(start, length) of each run of True at least min_length long."""
    if flags.size < min_length:
        return []
    totals = np.cumsum(flags, dtype=np.int64)
    if (totals[min_length - 1:] - np.concatenate(([0], totals[:-min_length]))).max() < min_length:
        return []  # no window of min_length is all True: the common case, two array operations
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = ends - starts >= min_length
    return list(zip(starts[keep].tolist(), (ends - starts)[keep].tolist()))


def wordy(unit: tuple) -> bool:
    """Two different words, one with two letters: text loops, not rules, empty cells or a stutter of one word."""
    return len(set(unit)) >= 2 and any(sum(character.isalpha() for character in word) >= 2 for word in unit)
