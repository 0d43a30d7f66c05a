"""GRPO's reward terms: the evaluation hook's own measurements of one sampled answer, each a number per answer.

Every term reads the `PageScore` that `evaluation.metrics.score_page` gives the answer against its page (the same
call the hook makes after every stage), so a reward and the report never disagree on what an answer is:

- `json_valid`: 1 when the answer reads as the schema's JSON (field by field), else 0.
- `schema_valid`: 1 when it has exactly the four string fields, each once, else 0.
- `accuracy`: 1 - CER, each rate capped at 1. Task `structured`: the mean over the fields present on either side
  (header, margin, footer, text), so text put in the wrong field costs what a misreading would; task `plain`: the
  page's plain text.
- `no_loop`: -1 when a degeneration detector fires (the paper's, tail loop, closed loop, repeated page furniture),
  else 0.
- `length`: -1 when the answer ran into the token bound; else 0 up to `max_length_ratio` times the reference
  answer's characters, falling linearly to -1 at twice that.

The stage's reward is their sum weighted by `RewardWeights`; TRL logs each term's mean per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from dharma_train.data.pages import Page
from dharma_train.data.prompts import target_text
from dharma_train.data.schema import FIELDS
from dharma_train.evaluation.metrics import PageScore, score_page

TERMS = ("json_valid", "schema_valid", "accuracy", "no_loop", "length")
SCORED_ANSWERS = 4096  # answers kept scored at once: every term of one step reads the same score


@dataclass
class RewardWeights:
    """`stages.NAME.rewards`: each term's weight in the reward (0 drops a term from it; it is still logged)."""

    json_valid: float = 0.5
    schema_valid: float = 0.5
    accuracy: float = 1.0
    no_loop: float = 1.0
    length: float = 0.5
    max_length_ratio: float = 1.5  # answers up to this many times the reference's characters pay no length penalty

    def __post_init__(self):
        negative = [term for term in TERMS if getattr(self, term) < 0]
        if negative:
            raise ValueError(f"rewards.{negative[0]} must be >= 0 (0 drops the term), got {getattr(self, negative[0])}")
        if not any(getattr(self, term) for term in TERMS):
            raise ValueError(f"rewards: at least one of {list(TERMS)} needs a weight above 0")
        if self.max_length_ratio < 1:
            raise ValueError(f"rewards.max_length_ratio must be >= 1, got {self.max_length_ratio}")

    def weights(self) -> list[float]:
        """The weights in TERMS order, as TRL's `reward_weights` takes them."""
        return [getattr(self, term) for term in TERMS]


def accuracy(score: PageScore, task: str) -> float:
    """1 - CER, per field where the schema has fields (the mean over fields present on either side)."""
    if task != "structured":
        return 1.0 - min(score.cer, 1.0)
    rates = [getattr(score, f"{field}_cer") for field in FIELDS]
    present = [min(rate, 1.0) for rate in rates if rate is not None]
    return 1.0 - sum(present) / len(present) if present else 1.0


def length_penalty(answer: str, reference: str, hit_token_limit: bool, max_ratio: float) -> float:
    """-1 at the token bound; else 0 up to max_ratio x the reference's characters, -1 at twice that."""
    if hit_token_limit:
        return -1.0
    excess = len(answer) / max(len(reference), 1) - max_ratio
    return 0.0 - min(max(excess / max_ratio, 0.0), 1.0)  # 0.0 -: never -0.0


def answer_rewards(page: Page, answer: str, hit_token_limit: bool, new_tokens: int, task: str,
                   max_length_ratio: float = 1.5) -> dict[str, float]:
    """Every term for one answer to one page, scored once by the evaluation's `score_page`."""
    score = score_page(page.id, page.family, answer, page.answer, hit_token_limit, new_tokens)
    return {"json_valid": float(score.json_valid), "schema_valid": float(score.schema_valid),
            "accuracy": accuracy(score, task), "no_loop": -1.0 if score.degenerate else 0.0,
            "length": length_penalty(answer, target_text(page.answer, task), hit_token_limit, max_length_ratio)}


class RewardTerms:
    """TRL reward functions, one per term, over the pages a GRPO dataset names by `page_id`.

    TRL calls each with the step's answers (`completions`), their token ids and the dataset's columns; an answer is
    scored once for all the terms. `max_new_tokens` and `eos_token_ids` tell an answer that ran into the bound.
    """

    def __init__(self, pages: list[Page], task: str, weights: RewardWeights, max_new_tokens: int,
                 eos_token_ids: set[int]):
        self.pages = {page.id: page for page in pages}
        self.task, self.weights = task, weights
        self.max_new_tokens, self.eos_token_ids = max_new_tokens, set(eos_token_ids)
        self._rewards = lru_cache(maxsize=SCORED_ANSWERS)(self._score)

    def functions(self) -> list[Callable]:
        """One callable per term, in TERMS order, each named after its term (TRL logs rewards/<name>/mean)."""
        return [self._term(term) for term in TERMS]

    def hit_token_limit(self, token_ids: list[int]) -> bool:
        """The answer stopped at the bound, not on an end token."""
        return len(token_ids) >= self.max_new_tokens and (not token_ids or token_ids[-1] not in self.eos_token_ids)

    def _term(self, term: str) -> Callable:
        def reward(completions: list, completion_ids: list[list[int]], page_id: list[str], **_) -> list[float]:
            return [self._rewards(page, _text(completion), tuple(ids))[term]
                    for page, completion, ids in zip(page_id, completions, completion_ids)]

        reward.__name__ = term
        return reward

    def _score(self, page_id: str, answer: str, token_ids: tuple[int, ...]) -> dict[str, float]:
        return answer_rewards(self.pages[page_id], answer, self.hit_token_limit(list(token_ids)), len(token_ids),
                              self.task, self.weights.max_length_ratio)


def _text(completion) -> str:
    """A completion as TRL hands it: the assistant message of a conversational prompt, or the text itself."""
    return completion[-1]["content"] if isinstance(completion, list) else completion

