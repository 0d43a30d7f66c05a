"""Loop-aware early stop: on a labeled set of full-length generations, stopping early changes no verdict."""

from __future__ import annotations

import random

import pytest
from faker import Faker

from dharma_train.data.schema import PageAnswer
from dharma_train.data.synthetic.text import make_answer
from dharma_train.evaluation.degeneration import paper_degenerate
from dharma_train.evaluation.hook import EvalConfig
from dharma_train.evaluation.loop_stop import LoopStop, loop_period, project_to_bound, replay_early_stop
from dharma_train.errors import ConfigError
from dharma_train.typed_config import typed
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
    stopped, disagreements, first_stop = {}, [], []
    for label, answer, tokens in _labeled_set(tokenizer):
        at, scored = replay_early_stop(tokens, BOUND, rule, tokenizer.decode, answer.to_json())
        stopped[label] = stopped.get(label, 0) + (at is not None)
        full, early = _verdict(tokenizer, answer, tokens, eos), _verdict(tokenizer, answer, scored, eos)
        if full[:2] != early[:2]:
            disagreements.append((label, full, early))
        if label == "loop to the bound":
            assert scored == tokens  # the projection is exactly the full-length stream
            first_stop.append(at)
    assert disagreements == []
    assert stopped["clean"] == 0 and stopped["table of identical rows, ended"] == 0
    assert stopped["loop to the bound"] == 24  # every loop is caught before the bound
    assert stopped["loop that broke off"] == 1  # caught: its verdict (degenerate) holds, its quality score not
    assert sorted(first_stop)[len(first_stop) // 2] < 256  # the median loop is stopped in under 256 tokens


def test_a_loop_is_stopped_well_before_the_bound(tokenizer):
    tokens = tokenizer("o documento " + "conforme " * 2000, add_special_tokens=False)["input_ids"][:BOUND]
    at, _ = replay_early_stop(tokens, BOUND, LoopStop(), tokenizer.decode)
    assert at is not None and at <= 560  # one word repeated: only the high bar stops it


def test_a_line_level_loop_is_stopped_after_its_eighth_repeat(tokenizer):
    line = "Rua das Flores, 12, conforme o contrato de locação "
    unit = len(tokenizer(line, add_special_tokens=False)["input_ids"])
    tokens = tokenizer("Aluguel do imóvel: " + line * 200, add_special_tokens=False)["input_ids"][:BOUND]
    at, _ = replay_early_stop(tokens, BOUND, LoopStop(), tokenizer.decode)
    assert at is not None and at <= 10 * unit + 16 < 256
    looser = LoopStop(text_repeats=16)  # evaluation.loop_stop_repeats: the count is the user's
    assert replay_early_stop(tokens, BOUND, looser, tokenizer.decode)[0] > at


SIGN_UP_SHEET = "LISTA DE PRESENÇA\n" + "Nome: ________ Assinatura: ________\n" * 12 + "Total: 12"


def _legitimately_repetitive_pages() -> list[PageAnswer]:
    """The degeneration detector's legitimate-repetition cases (tests/evaluation/test_metrics.py) as answers."""
    from tests.evaluation.test_metrics import LEGITIMATE

    return [PageAnswer(header="PREFEITURA MUNICIPAL DE CAMPINAS", text=text) for text in LEGITIMATE]


@pytest.mark.parametrize("with_reference", [True, False])
def test_legitimately_repetitive_pages_are_never_stopped(tokenizer, with_reference):
    eos = tokenizer.eos_token_id
    for answer in _legitimately_repetitive_pages():
        text = answer.to_json()
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        reference = text if with_reference else None
        assert replay_early_stop(tokens, BOUND, LoopStop(), tokenizer.decode, reference)[0] is None, answer.text


def test_a_sheet_of_identical_rows_runs_to_its_end_when_its_reference_is_known(tokenizer):
    sheet = PageAnswer(text=SIGN_UP_SHEET).to_json()
    tokens = tokenizer(sheet, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert replay_early_stop(tokens, BOUND, LoopStop(), tokenizer.decode, sheet)[0] is None
    # without the page, twelve identical rows read as a loop: the trade-off docs/evaluation.md states
    assert replay_early_stop(tokens, BOUND, LoopStop(), tokenizer.decode, None)[0] is not None
    # and with it, a run of the row past twice the reference's is one
    looping = PageAnswer(text=SIGN_UP_SHEET.replace("\nTotal: 12", "") + "Nome: ________ Assinatura: ________\n"
                         * 200).to_json()
    tokens = tokenizer(looping, add_special_tokens=False)["input_ids"][:BOUND]
    assert replay_early_stop(tokens, BOUND, LoopStop(), tokenizer.decode, sheet)[0] is not None


def test_projection_continues_the_unit_in_phase():
    assert project_to_bound([9, 1, 2, 3, 1, 2], 3, 10) == [9, 1, 2, 3, 1, 2, 3, 1, 2, 3]
    assert loop_period([5] * 10 + [1, 2] * 300, LoopStop()) == 2
    assert loop_period(list(range(900)), LoopStop()) == 0


def test_rule_refuses_zero_settings():
    with pytest.raises(ValueError, match="loop_stop"):
        LoopStop(min_tokens=0)


@pytest.mark.parametrize("key, value", [("loop_stop_repeats", 1), ("loop_stop_max_pattern_tokens", 0)])
def test_config_refuses_bad_loop_stop_values_at_start(key, value):
    with pytest.raises(ConfigError, match="loop_stop"):
        typed("evaluation", EvalConfig, {key: value})
    assert typed("evaluation", EvalConfig, {key: 4}).loop_stop_rule() is not None
