import json

import pytest

from dharma_train.data.schema import FIELDS, PageAnswer, parse_answer


def test_json_keeps_accents_and_all_four_fields_in_order():
    answer = PageAnswer(header="PREFEITURA DE SÃO PAULO", text="Certidão de óbito")
    data = json.loads(answer.to_json())
    assert list(data) == list(FIELDS)
    assert "SÃO" in answer.to_json()  # not escaped to \u00c3


def test_plain_text_reads_header_margin_body_footer_and_skips_empty_fields():
    answer = PageAnswer(header="H", margin="", footer="F", text="T")
    assert answer.to_plain_text() == "H\nT\nF"


def test_missing_fields_are_empty_and_unknown_fields_rejected():
    assert PageAnswer.from_dict({"text": "só o corpo"}) == PageAnswer(text="só o corpo")
    with pytest.raises(ValueError, match="unknown answer field"):
        PageAnswer.from_dict({"body": "x"})
    with pytest.raises(ValueError, match="must be strings"):
        PageAnswer.from_dict({"text": 3})


@pytest.mark.parametrize("output", ['{"text": "a"', "[1, 2]", '{"text": 1}', '{"corpo": "a"}', "texto solto"])
def test_parse_answer_rejects_what_is_not_the_schema(output):
    assert parse_answer(output) is None


def test_parse_answer_round_trips():
    answer = PageAnswer(header="a", margin="b", footer="c", text="d")
    assert parse_answer(answer.to_json()) == answer


def test_parse_answer_survives_an_overlong_integer():
    assert parse_answer('{"text": ' + "9" * 5000 + "}") is None
