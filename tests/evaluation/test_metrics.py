import jiwer
import pytest

from dharma_train.data.schema import PageAnswer
from dharma_train.evaluation.metrics import (
    aggregate, character_error_rate, is_degenerate, normalize, paper_degenerate, repeating_tail, schema_compliant,
    score_page,
)

PAIRS = [("Certidão de nascimento", "Certidao de nascimento"), ("abc", "abd e"), ("", "texto"),
         ("o mesmo texto", "o mesmo texto"), ("ofício nº 12", "Ofício n.º 12/2024")]


@pytest.mark.parametrize("prediction, reference", PAIRS)
def test_cer_agrees_with_jiwer(prediction, reference):
    assert character_error_rate(prediction, reference) == pytest.approx(jiwer.cer(reference, prediction))


def test_normalization_folds_unicode_forms_and_spaces():
    decomposed = "Sa\u0303o  Paulo\n"
    assert normalize(decomposed) == "São Paulo"
    assert character_error_rate(decomposed, "São Paulo") == 0.0


def test_paper_definition_needs_the_cap_and_four_repeats_of_the_tail():
    loop = "Início da página. " + "abcdefghijklmno" * 5
    assert paper_degenerate(loop, hit_token_limit=True)
    assert not paper_degenerate(loop, hit_token_limit=False)
    assert not paper_degenerate("Início da página. " + "abcdefghijklmno" * 3, hit_token_limit=True)


def test_loops_of_any_period_at_the_cap_are_degenerate():
    assert is_degenerate('{"header": "a", "text": "' + "lorem " * 30, hit_token_limit=True)
    assert is_degenerate("x" + " ." * 40, hit_token_limit=True)
    assert repeating_tail("zz" + "abc" * 10) == (3, 30)


def test_clean_or_short_outputs_are_not_degenerate():
    text = PageAnswer(header="CARTÓRIO", text="Certifico que o imóvel pertence a Maria.").to_json()
    assert not is_degenerate(text, hit_token_limit=False)
    assert not is_degenerate(text, hit_token_limit=True)  # cut off, but not looping
    table = "Item | Valor\n" + "".join(f"{i} | R$ {i},00\n" for i in range(10))
    assert not is_degenerate(table, hit_token_limit=False)


def test_schema_compliance_is_exactly_four_string_fields():
    assert schema_compliant(PageAnswer(text="a").to_json())
    assert not schema_compliant('{"text": "a"}')
    assert not schema_compliant('{"header": "", "margin": "", "footer": "", "text": "", "x": ""}')


def test_score_reads_json_answers_as_plain_text_and_aggregates_by_family():
    reference = PageAnswer(header="TÍTULO", text="corpo do texto")
    exact = score_page("a", "legal", reference.to_json(), reference, False, 10)
    plain = score_page("b", "printed", "TÍTULO\ncorpo do texto", reference, False, 10)
    assert exact.cer == 0.0 and exact.json_valid and exact.schema_valid
    assert plain.cer == 0.0 and not plain.json_valid
    summary = aggregate([exact, plain])
    assert summary["json_valid_rate"] == 0.5
    assert summary["by_family"]["legal"]["json_valid_rate"] == 1.0
    assert summary["by_family"]["printed"]["pages"] == 1
