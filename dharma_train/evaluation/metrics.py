"""Per-page quality, structure and degeneration measures, and their aggregation over a page set.

Normalization before error rates: Unicode NFC and runs of white space folded to one space, both ends stripped.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from dharma_train.data.schema import FIELDS, PageAnswer, parse_answer

_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def character_error_rate(prediction: str, reference: str) -> float:
    """Edit distance over reference length after normalization; above 1 when the output is long garbage."""
    prediction, reference = normalize(prediction), normalize(reference)
    if not reference:
        return 0.0 if not prediction else 1.0
    return Levenshtein.distance(prediction, reference) / len(reference)


def paper_degenerate(text: str, hit_token_limit: bool, tail_chars: int = 15, min_repeats: int = 4) -> bool:
    """DharmaOCR's definition: the cap was hit and the last 15 characters repeat at least 4 times in a row."""
    if not hit_token_limit or len(text) < tail_chars * min_repeats:
        return False
    tail = text[-tail_chars:]
    return text.endswith(tail * min_repeats)


def repeating_tail(text: str, max_period: int = 200, window: int = 2000) -> tuple[int, int]:
    """The (period, length) of the longest periodic suffix: how much of the end is one unit repeated."""
    text = text[-window:]
    best_period, best_length = 0, 0
    for period in range(1, min(max_period, len(text) // 2) + 1):
        length = period
        while length < len(text) and text[-1 - length] == text[-1 - length + period]:
            length += 1
        if length >= 2 * period and length > best_length:
            best_period, best_length = period, length
    return best_period, best_length


def is_degenerate(text: str, hit_token_limit: bool, min_repeats: int = 4, min_span: int = 32) -> bool:
    """A runaway loop: the paper's test, or a cap-hitting output whose end is one unit repeated min_repeats times."""
    if paper_degenerate(text, hit_token_limit):
        return True
    if not hit_token_limit:
        return False
    period, length = repeating_tail(text)
    return period > 0 and length >= max(min_span, min_repeats * period)


def schema_compliant(output: str) -> bool:
    """Exactly the four schema keys, each a string."""
    try:
        fields = json.loads(output)
    except (json.JSONDecodeError, RecursionError):
        return False
    return isinstance(fields, dict) and set(fields) == set(FIELDS) and all(isinstance(v, str) for v in fields.values())


@dataclass(frozen=True)
class PageScore:
    """What one generated answer scored against its page."""

    id: str
    family: str
    cer: float
    json_valid: bool
    schema_valid: bool
    degenerate: bool
    hit_token_limit: bool
    new_tokens: int


def score_page(page_id: str, family: str, output: str, reference: PageAnswer, hit_token_limit: bool,
               new_tokens: int) -> PageScore:
    """Score an output; CER compares plain text so plain-text and JSON answers are measured on the same scale."""
    parsed = parse_answer(output)
    predicted_text = parsed.to_plain_text() if parsed is not None else output
    return PageScore(
        id=page_id, family=family,
        cer=character_error_rate(predicted_text, reference.to_plain_text()),
        json_valid=parsed is not None,
        schema_valid=schema_compliant(output),
        degenerate=is_degenerate(output, hit_token_limit),
        hit_token_limit=hit_token_limit,
        new_tokens=new_tokens,
    )


def aggregate(scores: list[PageScore]) -> dict:
    """Means over pages, overall and per data family."""
    summary = _means(scores)
    by_family: dict[str, list[PageScore]] = defaultdict(list)
    for score in scores:
        by_family[score.family].append(score)
    summary["by_family"] = {family: _means(group) for family, group in sorted(by_family.items())}
    return summary


def _means(scores: list[PageScore]) -> dict:
    n = max(len(scores), 1)
    return {
        "pages": len(scores),
        "cer": sum(s.cer for s in scores) / n,
        "json_valid_rate": sum(s.json_valid for s in scores) / n,
        "schema_valid_rate": sum(s.schema_valid for s in scores) / n,
        "degeneration_rate": sum(s.degenerate for s in scores) / n,
        "token_limit_rate": sum(s.hit_token_limit for s in scores) / n,
    }
