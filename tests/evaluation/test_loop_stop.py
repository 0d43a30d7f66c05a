"""Loop-aware early stop: on a labeled set of full-length generations, stopping early changes no verdict."""

from __future__ import annotations

import random

import pytest
from faker import Faker

from dharma_train.data.schema import PageAnswer
from dharma_train.data.synthetic.text import make_answer
from dharma_train.evaluation.degeneration import paper_degenerate
from dharma_train.evaluation.loop_stop import LoopStop, loop_period, project_to_bound, replay_early_stop
from dharma_train.evaluation.metrics import score_page
from dharma_train.models.loading import load_processor
from dharma_train.models.tiny import tiny_model_dir

BOUND = 1024
LOOPS = ["o imóvel ", "conforme ", "| | ", "_____ ", "Rua das Flores, 12 ", "x", "de acordo com o art. 5º, "]


@pytest.fixture(scope="module")
def tokenizer():
    return load_processor(str(tiny_model_dir())).tokenizer


def _labeled_set(tokenizer):
    """(label, answer, full-length token stream) for clean pages, loops to the bound, a loop that broke off,
    and legitimate repetition: what a model's full-length generations look like, each labeled by construction."""
    rng, faker = random.Random(0), Faker("pt_BR")
    faker.seed_instance(0)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tokenizer.eos_token_id
    cases = []
    for number in range(24):
        answer = make_answer(rng, faker, ("printed", "handwritten", "legal")[number % 3])
        json = answer.to_json()
        cases.append(("clean", answer, encode(json) + [eos]))
        loop = LOOPS[number % len(LOOPS)]
        cut = rng.randrange(10, max(11, len(json) // 2))
        cases.append(("loop to the bound", answer, encode(json[:cut] + loop * 2000)[:BOUND]))
    table = PageAnswer(text="Nome | Assinatura\n" + "____ | ____\n" * 30 + "Total: 30")
    cases.append(("table of identical rows, ended", table, encode(table.to_json()) + [eos]))
    broke = make_answer(rng, faker, "printed")
    text = broke.to_json()
    cases.append(("loop that broke off", broke, encode(text[:40] + "o imóvel " * 150 + text[40:]) + [eos]))
    return cases


def _verdict(tokenizer, answer, tokens, eos):
    ended = eos in tokens
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    hit = not ended and len(tokens) >= BOUND
    score = score_page("p", "printed", text, answer, hit, len(tokens))
    return score.degenerate, paper_degenerate(text, hit), score.quality_score


def test_stopping_early_changes_no_verdict_on_the_labeled_set(tokenizer):
    rule = LoopStop()
    eos = tokenizer.eos_token_id
    stopped, disagreements = {}, []
    for label, answer, tokens in _labeled_set(tokenizer):
        at, scored = replay_early_stop(tokens, BOUND, rule)
        stopped[label] = stopped.get(label, 0) + (at is not None)
        full, early = _verdict(tokenizer, answer, tokens, eos), _verdict(tokenizer, answer, scored, eos)
        if full[:2] != early[:2]:
            disagreements.append((label, full, early))
        if label == "loop to the bound":
            assert scored == tokens  # the projection is exactly the full-length stream
    assert disagreements == []
    assert stopped["clean"] == 0 and stopped["table of identical rows, ended"] == 0
    assert stopped["loop to the bound"] == 24  # every loop is caught before the bound
    assert stopped["loop that broke off"] == 1  # caught: its verdict (degenerate) holds, its quality score not


def test_a_loop_is_stopped_well_before_the_bound(tokenizer):
    tokens = tokenizer("o documento " + "conforme " * 2000, add_special_tokens=False)["input_ids"][:BOUND]
    at, _ = replay_early_stop(tokens, BOUND, LoopStop())
    assert at is not None and at <= 560


def test_projection_continues_the_unit_in_phase():
    assert project_to_bound([9, 1, 2, 3, 1, 2], 3, 10) == [9, 1, 2, 3, 1, 2, 3, 1, 2, 3]
    assert loop_period([5] * 10 + [1, 2] * 300, LoopStop()) == 2
    assert loop_period(list(range(900)), LoopStop()) == 0


def test_rule_refuses_zero_settings():
    with pytest.raises(ValueError, match="loop_stop"):
        LoopStop(min_tokens=0)
