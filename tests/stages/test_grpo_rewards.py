"""GRPO's reward terms on hand-made answers: a valid page, a looping page, a misplaced field, invalid JSON."""

from pathlib import Path

import pytest

from dharma_train.data.pages import Page
from dharma_train.data.schema import PageAnswer
from dharma_train.errors import ConfigError
from dharma_train.evaluation.metrics import character_error_rate
from dharma_train.stages.grpo_rewards import TERMS, RewardTerms, RewardWeights, answer_rewards

REFERENCE = PageAnswer(header="PREFEITURA MUNICIPAL DE OURO PRETO", footer="Rua das Flores, 12",
                       text="Certifico que o imóvel situado na Rua Direita pertence ao requerente.")
PAGE = Page(id="p1", image=Path("p1.png"), answer=REFERENCE, family="legal")
VALID = REFERENCE.to_json()
LOOPING = '{"header": "PREFEITURA MUNICIPAL DE OURO PRETO", "text": "' + "o imóvel situado " * 40
MISPLACED = PageAnswer(footer=REFERENCE.footer, text=f"{REFERENCE.header}\n{REFERENCE.text}").to_json()
INVALID = f"{REFERENCE.header} {REFERENCE.text} {REFERENCE.footer}"


def _rewards(answer: str, hit_token_limit: bool = False) -> dict[str, float]:
    return answer_rewards(PAGE, answer, hit_token_limit, 40, "structured")


def test_a_valid_page_earns_every_term():
    assert _rewards(VALID) == {"json_valid": 1.0, "schema_valid": 1.0, "accuracy": 1.0, "no_loop": 0.0,
                               "length": 0.0}


def test_a_looping_page_that_ran_into_the_bound_pays_the_loop_and_the_length_penalties():
    rewards = _rewards(LOOPING, hit_token_limit=True)
    assert (rewards["json_valid"], rewards["schema_valid"], rewards["no_loop"], rewards["length"]) == (0, 0, -1, -1)
    assert rewards["accuracy"] < 0.5


def test_a_misplaced_field_costs_accuracy_per_field_that_the_page_text_does_not_see():
    rewards = _rewards(MISPLACED)
    assert (rewards["json_valid"], rewards["schema_valid"], rewards["no_loop"]) == (1.0, 1.0, 0.0)
    same_page_text = PageAnswer(footer=REFERENCE.footer, text=f"{REFERENCE.header}\n{REFERENCE.text}")
    assert character_error_rate(same_page_text.to_plain_text(), REFERENCE.to_plain_text()) == 0.0
    assert rewards["accuracy"] < 0.6  # the header field is empty (CER 1), the body holds text it should not


def test_invalid_json_earns_no_structure_and_is_read_as_body_text():
    rewards = _rewards(INVALID)
    assert (rewards["json_valid"], rewards["schema_valid"], rewards["no_loop"], rewards["length"]) == (0, 0, 0, 0)
    assert 0.0 < rewards["accuracy"] < _rewards(MISPLACED)["accuracy"]


def test_repeated_page_furniture_is_a_loop_and_an_overlong_answer_pays_the_length_guard():
    echoed = PageAnswer(header=REFERENCE.header, footer=REFERENCE.footer,
                        text=f"{REFERENCE.text} " + f"{REFERENCE.footer} " * 4).to_json()
    assert _rewards(echoed)["no_loop"] == -1.0
    long = PageAnswer(header=REFERENCE.header, footer=REFERENCE.footer, text=REFERENCE.text * 3).to_json()
    assert -1.0 < _rewards(long)["length"] < 0.0


def test_the_weighted_reward_ranks_valid_over_misplaced_over_invalid_over_looping():
    weights = RewardWeights()

    def total(answer, hit=False):
        return sum(weight * _rewards(answer, hit)[term] for term, weight in zip(TERMS, weights.weights()))

    assert total(VALID) > total(MISPLACED) > total(INVALID) > total(LOOPING, hit=True)


def test_reward_functions_take_trls_call_and_tell_the_token_bound_from_an_end_token():
    terms = RewardTerms([PAGE], "structured", RewardWeights(), max_new_tokens=4, eos_token_ids={2})
    functions = terms.functions()
    assert [function.__name__ for function in functions] == list(TERMS)  # TRL logs rewards/<name>/mean
    completions = [[{"role": "assistant", "content": VALID}]] * 2
    ended, cut = [5, 6, 7, 2], [5, 6, 7, 8]
    length = functions[TERMS.index("length")]
    assert length(completions=completions, completion_ids=[ended, cut], page_id=["p1", "p1"], trainer_state=None) \
        == [0.0, -1.0]
    assert functions[0](completions=completions, completion_ids=[ended, cut], page_id=["p1", "p1"]) == [1.0, 1.0]


@pytest.mark.parametrize("values, key", [({"accuracy": -1.0}, "rewards.accuracy"),
                                         ({term: 0.0 for term in TERMS}, "at least one of"),
                                         ({"max_length_ratio": 0.5}, "rewards.max_length_ratio")])
def test_bad_weights_are_refused_naming_the_key(values, key):
    from dharma_train.stages import GRPOStage

    with pytest.raises(ConfigError, match=key) as error:
        GRPOStage("grpo", {"rewards": values})
    assert len(str(error.value).splitlines()) == 1
