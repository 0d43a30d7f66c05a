"""Per-page text, structure and degeneration measures, and their means over a page set (docs/evaluation.md).

Reading an output: a JSON object whose keys are schema fields with string values (missing fields empty, the last
of duplicate keys wins) is read field by field; anything else (plain text, truncated or invalid JSON, a list, a
number, non-string values, unknown keys) is read as if the whole raw output were the `text` field, the other
fields empty. The page's plain text is the reading's `PageAnswer.to_plain_text()` (header, margin, text, footer).

Normalization: Unicode NFC, runs of white space folded to one space, both ends stripped.

Text (each also per field as FIELD_cer, FIELD_wer, ...; None on a page where the field is empty on both sides):
- cer = levenshtein(pred, ref) / len(ref) on normalized strings; cer_raw the same on the strings as they are.
- wer = levenshtein over words / number of reference words, words split on white space; wer_raw without NFC.
- An empty reference scores 0 against an empty prediction and 1 against anything else. Rates exceed 1 when the
  prediction is much longer than the reference. Equal to `jiwer.cer` / `jiwer.wer` on the same strings.

Paper-compatible score (Dharma-AI, "DharmaOCR", arXiv 2604.14314, and its DharmaOCR-Benchmark; the formula of a
third-party reproduction that says it matches the benchmark's official notebook), on raw plain texts:
- levenshtein_ratio = 1 - levenshtein(pred, ref) / max(len(pred), len(ref)), 1 when both are empty.
- bleu = sentence BLEU-4 over white-space words, NLTK `SmoothingFunction().method1`; 1 when both are empty.
- paper_score = (levenshtein_ratio + bleu) / 2.

Structure:
- json_valid: the output reads field by field (above); schema_valid: also all four fields, each exactly once.
- misplaced_fields: reference header/margin/footer whose normalized text is not in its own predicted field but is
  in another predicted field whose reference does not contain it; misplaced_rate = misplaced / non-empty furniture
  fields (0 without furniture). A raw output is all `text`, so furniture it transcribes counts as misplaced.
- structure_score = (json_valid + schema_valid + (1 - misplaced_rate)) / 3.
- quality_score = 0.8 * paper_score + 0.2 * structure_score.

Degeneration (degeneration_reason: the first that applies, "" when clean; details and guards in degeneration.py):
- "paper": the cap was hit and the last 15 characters repeat 4 times in a row at the end (DharmaOCR's definition).
- "tail_loop": the cap was hit and the end is one unit of up to 200 characters repeated 4 times over 32 characters.
- "closed_loop": a unit of 2 to 64 words repeated 8 times in a row anywhere, no cap needed, unless the reference
  repeats it at least half as often.
- "furniture_repeat": header/margin/footer text (predicted or reference, 8+ characters) 3 times in the predicted
  body and at least 2 more times than in the reference body.

Aggregates: page means of every float key; per-field rates over the pages where the field is present on either
side; rates json_valid_rate, schema_valid_rate, degeneration_rate, paper_degeneration_rate ("paper" only),
token_limit_rate; placement_error_rate = all misplaced / all furniture fields, pooled over pages.
"""

from __future__ import annotations

import json
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rapidfuzz.distance import Levenshtein

from dharma_train.data.schema import FIELDS, PageAnswer, parse_answer
from dharma_train.evaluation.degeneration import (  # noqa: F401  (re-exported)
    closed_loop,
    furniture_repeat,
    loop_words,
    paper_degenerate,
    repeating_tail,
    tail_loop,
)

FURNITURE = ("header", "margin", "footer")
TEXT_WEIGHT = 0.8  # share of quality_score that is the paper-compatible text score; the rest is structure
_RATE_NAMES = ("cer", "cer_raw", "wer", "wer_raw")  # as text_errors keys them
_SMOOTHING = SmoothingFunction().method1


def normalize(text: str) -> str:
    """One spelling per visible text: Unicode forms and white-space layout are not transcription errors."""
    return " ".join(unicodedata.normalize("NFC", text).split())  # str.split() splits exactly where regex \s does


def _error_rate(prediction: Sequence, reference: Sequence) -> float:
    """Edit distance over reference length; the empty reference is 0 if matched, else 1."""
    if not reference:
        return 0.0 if not prediction else 1.0
    return Levenshtein.distance(prediction, reference) / len(reference)


def character_error_rate(prediction: str, reference: str, normalized: bool = True) -> float:
    """CER; above 1 when the output is long garbage."""
    if normalized:
        prediction, reference = normalize(prediction), normalize(reference)
    return _error_rate(prediction, reference)


def word_error_rate(prediction: str, reference: str, normalized: bool = True) -> float:
    """WER over white-space words; rapidfuzz compares word lists as sequences."""
    if normalized:
        prediction, reference = normalize(prediction), normalize(reference)
    return _error_rate(prediction.split(), reference.split())


def levenshtein_ratio(prediction: str, reference: str) -> float:
    """The benchmark's character similarity, in [0, 1]."""
    longest = max(len(prediction), len(reference))
    return 1.0 if longest == 0 else 1.0 - Levenshtein.distance(prediction, reference) / longest


def bleu(prediction: str, reference: str) -> float:
    """The benchmark's sentence BLEU-4 (NLTK, smoothing method1); under 1 even when exact for pages under 4 words."""
    predicted, expected = prediction.split(), reference.split()
    if not predicted or not expected:
        return 1.0 if predicted == expected else 0.0
    return float(sentence_bleu([expected], predicted, smoothing_function=_SMOOTHING))


def paper_score(prediction: str, reference: str) -> float:
    """DharmaOCR's per-page quality score, to compare with published numbers."""
    return (levenshtein_ratio(prediction, reference) + bleu(prediction, reference)) / 2


def read_answer(output: str) -> PageAnswer | None:
    """The output field by field, or None; never raises (parse_answer lets oversized JSON integers through)."""
    try:
        return parse_answer(output)
    except (ValueError, RecursionError):
        return None


def as_answer(output: str) -> PageAnswer:
    """What each field is taken to say: the JSON reading, else the whole raw output as body text."""
    return read_answer(output) or PageAnswer(text=output)


def schema_compliant(output: str) -> bool:
    """Exactly the four schema keys, each a string and each once."""
    try:
        fields = json.loads(output, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):
        return False
    return isinstance(fields, dict) and set(fields) == set(FIELDS) and all(isinstance(v, str) for v in fields.values())


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose repeated key the default parser would silently overwrite is not the schema."""
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys in {keys}")
    return dict(pairs)


def placement(prediction: PageAnswer, reference: PageAnswer) -> tuple[int, int]:
    """(misplaced, furniture): furniture the model moved into another field, over furniture the page has."""
    predicted = {field: normalize(getattr(prediction, field)) for field in FIELDS}
    expected = {field: normalize(getattr(reference, field)) for field in FIELDS}
    furniture = [field for field in FURNITURE if expected[field]]
    return sum(_misplaced(field, predicted, expected) for field in furniture), len(furniture)


def _misplaced(field: str, predicted: dict, expected: dict) -> bool:
    """Missing from its own field and present where the page does not put it."""
    wanted = expected[field]
    return wanted not in predicted[field] and any(
        wanted in predicted[other] and wanted not in expected[other] for other in FIELDS if other != field)


def degeneration_reason(output: str, hit_token_limit: bool, reference: PageAnswer | None = None) -> str:
    """Why an output counts as degenerate, "" if it does not; the reference, when given, excuses its own repeats."""
    return _degeneration_reason(output, hit_token_limit, as_answer(output), reference)


def _degeneration_reason(output: str, hit_token_limit: bool, prediction: PageAnswer,
                         reference: PageAnswer | None) -> str:
    """degeneration_reason for an output already read, so scoring parses it once."""
    if paper_degenerate(output, hit_token_limit):
        return "paper"
    if tail_loop(output, hit_token_limit):
        return "tail_loop"
    reference_words = None if reference is None else loop_words(normalize(reference.to_plain_text()))
    if closed_loop(loop_words(normalize(prediction.to_plain_text())), reference_words):
        return "closed_loop"
    furniture = [normalize(getattr(answer, field)) for answer in (prediction, reference) if answer is not None
                 for field in FURNITURE]
    reference_body = "" if reference is None else normalize(reference.text)
    if furniture_repeat(normalize(prediction.text), furniture, reference_body):
        return "furniture_repeat"
    return ""


def is_degenerate(text: str, hit_token_limit: bool, reference: PageAnswer | None = None) -> bool:
    """Any of the four detectors fires."""
    return bool(degeneration_reason(text, hit_token_limit, reference))


@dataclass(frozen=True)
class PageScore:
    """What one answer scored against its page; a per-field rate is None where both sides lack the field."""

    id: str
    family: str
    cer: float
    json_valid: bool
    schema_valid: bool
    degenerate: bool
    hit_token_limit: bool
    new_tokens: int
    cer_raw: float
    wer: float
    wer_raw: float
    header_cer: float | None
    header_cer_raw: float | None
    header_wer: float | None
    header_wer_raw: float | None
    margin_cer: float | None
    margin_cer_raw: float | None
    margin_wer: float | None
    margin_wer_raw: float | None
    footer_cer: float | None
    footer_cer_raw: float | None
    footer_wer: float | None
    footer_wer_raw: float | None
    text_cer: float | None
    text_cer_raw: float | None
    text_wer: float | None
    text_wer_raw: float | None
    levenshtein_ratio: float
    bleu: float
    paper_score: float
    misplaced_fields: int
    furniture_fields: int
    misplaced_rate: float
    structure_score: float
    quality_score: float
    degeneration_reason: str


def text_errors(prediction: str, reference: str, prefix: str = "") -> dict[str, float]:
    """CER and WER, normalized and raw, keyed as PageScore names them; normalizes once for both."""
    predicted, expected = normalize(prediction), normalize(reference)
    return {f"{prefix}cer": _error_rate(predicted, expected),
            f"{prefix}cer_raw": _error_rate(prediction, reference),
            f"{prefix}wer": _error_rate(predicted.split(), expected.split()),
            f"{prefix}wer_raw": _error_rate(prediction.split(), reference.split())}


def field_errors(prediction: PageAnswer, reference: PageAnswer) -> dict[str, float | None]:
    """Per-field text errors; None where neither side has the field."""
    errors: dict[str, float | None] = {}
    for field in FIELDS:
        predicted, expected = getattr(prediction, field), getattr(reference, field)
        if predicted or expected:
            errors.update(text_errors(predicted, expected, f"{field}_"))
        else:
            errors.update(dict.fromkeys((f"{field}_{rate}" for rate in _RATE_NAMES), None))
    return errors


def score_page(page_id: str, family: str, output: str, reference: PageAnswer, hit_token_limit: bool,
               new_tokens: int) -> PageScore:
    """Score an output; page-level rates compare plain text so plain and JSON answers are on the same scale."""
    parsed = read_answer(output)
    prediction = parsed or PageAnswer(text=output)
    predicted_text, expected_text = prediction.to_plain_text(), reference.to_plain_text()
    schema_valid = schema_compliant(output)
    misplaced, furniture = placement(prediction, reference)
    misplaced_rate = misplaced / furniture if furniture else 0.0
    structure = (float(parsed is not None) + float(schema_valid) + (1.0 - misplaced_rate)) / 3
    lev, bleu_value = levenshtein_ratio(predicted_text, expected_text), bleu(predicted_text, expected_text)
    paper = (lev + bleu_value) / 2
    reason = _degeneration_reason(output, hit_token_limit, prediction, reference)
    return PageScore(
        id=page_id, family=family, json_valid=parsed is not None, schema_valid=schema_valid,
        degenerate=bool(reason), hit_token_limit=hit_token_limit, new_tokens=new_tokens,
        **text_errors(predicted_text, expected_text), **field_errors(prediction, reference),
        levenshtein_ratio=lev, bleu=bleu_value, paper_score=paper,
        misplaced_fields=misplaced, furniture_fields=furniture, misplaced_rate=misplaced_rate,
        structure_score=structure, quality_score=TEXT_WEIGHT * paper + (1 - TEXT_WEIGHT) * structure,
        degeneration_reason=reason,
    )


_MEANS = ("cer", "cer_raw", "wer", "wer_raw", "levenshtein_ratio", "bleu", "paper_score", "structure_score",
          "quality_score")
_FIELD_MEANS = tuple(f"{field}_{rate}" for field in FIELDS for rate in _RATE_NAMES)
_RATES = {"json_valid_rate": lambda s: s.json_valid, "schema_valid_rate": lambda s: s.schema_valid,
          "degeneration_rate": lambda s: s.degenerate,
          "paper_degeneration_rate": lambda s: s.degeneration_reason == "paper",
          "token_limit_rate": lambda s: s.hit_token_limit}


def aggregate(scores: list[PageScore]) -> dict:
    """Means over pages, overall and per data family."""
    summary = _means(scores)
    by_family: dict[str, list[PageScore]] = defaultdict(list)
    for score in scores:
        by_family[score.family].append(score)
    summary["by_family"] = {family: _means(group) for family, group in sorted(by_family.items())}
    return summary


def _means(scores: list[PageScore]) -> dict:
    """Page means; per-field rates over pages where the field is present; placement pooled over furniture fields."""
    n = max(len(scores), 1)
    summary: dict = {"pages": len(scores)}
    summary.update({key: sum(getattr(s, key) for s in scores) / n for key in _MEANS})
    for key in _FIELD_MEANS:
        present = [getattr(s, key) for s in scores if getattr(s, key) is not None]
        summary[key] = sum(present) / len(present) if present else 0.0
    summary.update({key: sum(bool(flag(s)) for s in scores) / n for key, flag in _RATES.items()})
    furniture = sum(s.furniture_fields for s in scores)
    summary["placement_error_rate"] = sum(s.misplaced_fields for s in scores) / furniture if furniture else 0.0
    return summary
