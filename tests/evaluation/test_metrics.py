import math
import random
import time
from dataclasses import asdict

import jiwer
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from dharma_train.data.schema import PageAnswer
from dharma_train.evaluation.metrics import (
    aggregate,
    bleu,
    character_error_rate,
    degeneration_reason,
    is_degenerate,
    levenshtein_ratio,
    normalize,
    paper_degenerate,
    paper_score,
    placement,
    repeating_tail,
    schema_compliant,
    score_page,
    word_error_rate,
)

PAIRS = [("Certidão de nascimento", "Certidao de nascimento"), ("abc", "abd e"), ("", "texto"),
         ("o mesmo texto", "o mesmo texto"), ("ofício nº 12", "Ofício n.º 12/2024"),
         ("Nome: Maria  da Silva", "Nome: Maria da Silva"), ("CPF 123.456.789-00 RG", "CPF 123.456.789-00")]


def _score(output: str, reference: PageAnswer, hit_token_limit: bool = False, family: str = "legal"):
    return score_page("p", family, output, reference, hit_token_limit, 100)


# --- text error rates -------------------------------------------------------------------------------------------

def test_known_error_rates():
    assert character_error_rate("abc", "abd") == pytest.approx(1 / 3)  # one substitution over three characters
    # "está" deleted and "azul" inserted: 2 word edits over 5 reference words
    assert word_error_rate("o gato no tapete azul", "o gato está no tapete") == pytest.approx(0.4)
    assert character_error_rate("ab", "a") == 1.0  # one insertion over one reference character


@pytest.mark.parametrize("prediction, reference", PAIRS)
def test_error_rates_agree_with_jiwer(prediction, reference):
    assert character_error_rate(prediction, reference) == pytest.approx(jiwer.cer(normalize(reference),
                                                                                  normalize(prediction)))
    assert character_error_rate(prediction, reference, normalized=False) == pytest.approx(
        jiwer.cer(reference, prediction))
    assert word_error_rate(prediction, reference) == pytest.approx(jiwer.wer(normalize(reference),
                                                                             normalize(prediction)))
    assert word_error_rate(prediction, reference, normalized=False) == pytest.approx(jiwer.wer(reference, prediction))


def test_empty_reference_scores_zero_when_matched_and_one_otherwise():
    for rate in (character_error_rate, word_error_rate):
        assert rate("", "") == 0.0
        assert rate(" \n", "") == 0.0  # white space alone normalizes to nothing
        assert rate("texto inventado", "") == 1.0


def test_normalization_folds_unicode_forms_and_spaces_but_raw_rates_do_not():
    decomposed = "Sa\u0303o  Paulo\n"
    assert normalize(decomposed) == "São Paulo"
    assert character_error_rate(decomposed, "São Paulo") == 0.0
    assert character_error_rate(decomposed, "São Paulo", normalized=False) > 0
    assert word_error_rate(decomposed, "São Paulo", normalized=False) == 0.5  # "Sa\u0303o" is another word


# --- the paper-compatible score ---------------------------------------------------------------------------------

def test_levenshtein_ratio_by_hand():
    assert levenshtein_ratio("casa", "caso") == 0.75  # 1 - 1/4
    assert levenshtein_ratio("abc", "abcdef") == 0.5  # 1 - 3/6: the longer string sets the scale
    assert levenshtein_ratio("", "") == 1.0
    assert levenshtein_ratio("", "abc") == 0.0


def test_bleu_by_hand_and_against_nltk():
    # 5 words each, so no brevity penalty. n-gram precisions 4/5, 3/4, 2/3, 1/2 multiply to 1/5.
    assert bleu("o gato está no chão", "o gato está no tapete") == pytest.approx(0.2 ** 0.25)
    # Only unigrams match (3/5); method1 replaces each zero count by 0.1: 0.1/4, 0.1/3, 0.1/2.
    expected = (0.6 * (0.1 / 4) * (0.1 / 3) * (0.1 / 2)) ** 0.25
    assert bleu("a x c y e", "a b c d e") == pytest.approx(expected)
    reference, hypothesis = "Certifico que o imóvel situado na Rua", "Certifico que imóvel situado na Rua Sete"
    assert bleu(hypothesis, reference) == pytest.approx(sentence_bleu(
        [reference.split()], hypothesis.split(), smoothing_function=SmoothingFunction().method1))
    assert bleu("", "") == 1.0 and bleu("", "texto") == 0.0 and bleu("texto", "") == 0.0
    assert bleu("duas palavras", "duas palavras") < 1  # sentence BLEU-4 quirk kept for comparability


def test_paper_score_is_the_mean_of_ratio_and_bleu():
    assert paper_score("o gato está no chão", "o gato está no tapete") == pytest.approx(
        (levenshtein_ratio("o gato está no chão", "o gato está no tapete") + 0.2 ** 0.25) / 2)
    reference = PageAnswer(header="TÍTULO DO DOCUMENTO", text="corpo do texto da página")
    page = _score(reference.to_json(), reference)
    assert page.levenshtein_ratio == 1.0 and page.bleu == pytest.approx(1.0) and page.paper_score == pytest.approx(1)


# --- per-field rates ---------------------------------------------------------------------------------------------

def test_per_field_rates_compare_each_field_with_its_own_reference():
    reference = PageAnswer(header="PODER JUDICIÁRIO", footer="Página 1 de 2", text="Vistos etc. Decido.")
    output = PageAnswer(header="PODER JUDICIARIO", text="Vistos etc. Decido.").to_json()
    page = _score(output, reference)
    assert page.header_cer == pytest.approx(1 / 16) and page.header_wer == pytest.approx(0.5)
    assert page.header_cer == pytest.approx(jiwer.cer(reference.header, "PODER JUDICIARIO"))
    assert page.footer_cer == 1.0 and page.footer_wer == 1.0  # omitted
    assert page.text_cer == 0.0 and page.text_wer_raw == 0.0
    assert page.margin_cer is None and page.margin_wer_raw is None  # empty on both sides: not applicable


def test_a_non_json_output_is_read_as_body_text():
    reference = PageAnswer(header="PODER JUDICIÁRIO", text="Vistos etc.")
    page = _score("PODER JUDICIÁRIO\nVistos etc.", reference)
    assert not page.json_valid and page.cer == 0.0  # page-level text is the same
    assert page.header_cer == 1.0  # but no field was separated
    assert page.text_cer == pytest.approx(character_error_rate("PODER JUDICIÁRIO Vistos etc.", "Vistos etc."))


# --- structure ---------------------------------------------------------------------------------------------------

def test_schema_compliance_is_exactly_four_string_fields_once_each():
    assert schema_compliant(PageAnswer(text="a").to_json())
    assert not schema_compliant('{"text": "a"}')
    assert not schema_compliant('{"header": "", "margin": "", "footer": "", "text": "", "x": ""}')
    assert not schema_compliant('{"header": "", "margin": "", "footer": "", "text": 1}')
    assert not schema_compliant('{"header": "", "header": "", "margin": "", "footer": "", "text": ""}')
    assert not schema_compliant('[{"header": "", "margin": "", "footer": "", "text": ""}]')


FOOTER = "Rua das Flores, 100 - Centro - São Paulo/SP"


def test_furniture_moved_into_the_body_is_a_placement_error():
    reference = PageAnswer(header="CARTÓRIO DO 2º OFÍCIO", footer=FOOTER, text="Certifico que o imóvel é de Ana.")
    moved = PageAnswer(header="CARTÓRIO DO 2º OFÍCIO", text=reference.text + "\n" + FOOTER)
    assert placement(moved, reference) == (1, 2)
    page = _score(moved.to_json(), reference)
    assert page.misplaced_fields == 1 and page.furniture_fields == 2 and page.misplaced_rate == 0.5
    assert page.structure_score == pytest.approx((1 + 1 + 0.5) / 3)
    assert placement(reference, reference) == (0, 2)


def test_furniture_is_not_misplaced_when_kept_in_place_omitted_or_legitimately_in_the_body():
    reference = PageAnswer(footer=FOOTER, text="Endereço: " + FOOTER + ".")
    assert placement(PageAnswer(text=reference.text), reference) == (0, 1)  # the body itself quotes the footer
    reference = PageAnswer(footer=FOOTER, text="Corpo.")
    assert placement(PageAnswer(footer=FOOTER, text="Corpo. " + FOOTER), reference) == (0, 1)  # kept (and echoed)
    assert placement(PageAnswer(text="Corpo."), reference) == (0, 1)  # omitted: a text error, not a placement one
    assert placement(PageAnswer(text="corpo"), PageAnswer(text="corpo")) == (0, 0)


def test_a_plain_answer_places_all_its_furniture_in_the_body():
    reference = PageAnswer(header="MINISTÉRIO DA SAÚDE", text="Ofício circular.")
    page = _score("MINISTÉRIO DA SAÚDE\nOfício circular.", reference)
    assert page.misplaced_fields == 1 and page.structure_score == 0.0


# --- degeneration ------------------------------------------------------------------------------------------------

def test_paper_definition_needs_the_cap_and_four_repeats_of_the_tail():
    loop = "Início da página. " + "abcdefghijklmno" * 5
    assert paper_degenerate(loop, hit_token_limit=True)
    assert not paper_degenerate(loop, hit_token_limit=False)
    assert not paper_degenerate("Início da página. " + "abcdefghijklmno" * 3, hit_token_limit=True)
    assert degeneration_reason(loop, True) == "paper"


def test_loops_of_any_period_at_the_cap_are_degenerate():
    assert degeneration_reason('{"header": "a", "text": "' + "lorem " * 30, hit_token_limit=True) == "tail_loop"
    assert is_degenerate("x" + " ." * 40, hit_token_limit=True)
    assert repeating_tail("zz" + "abc" * 10) == (3, 30)
    assert not paper_degenerate("conforme " * 20, True)  # period 9 does not divide 15: the paper's test misses it
    assert degeneration_reason("conforme " * 20, True) == "tail_loop"


def test_repeating_tail_matches_a_brute_force_search():
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice("ab ") for _ in range(rng.randint(0, 60)))
        expected = (0, 0)
        for period in range(1, len(text) // 2 + 1):
            length = period
            while length < len(text) and text[-1 - length] == text[-1 - length + period]:
                length += 1
            if length >= 2 * period and length > expected[1]:
                expected = (period, length)
        assert repeating_tail(text) == expected, text


CLOSED_LOOP = PageAnswer(text="O requerente declara, sob as penas da lei, que reside no endereço indicado "
                         + "e que não possui outro imóvel " * 10 + "no município.").to_json()
PARAGRAPH_LOOP = "Aos dez dias do mês de março de dois mil e vinte, nesta cidade, compareceu o outorgante. " * 8


@pytest.mark.parametrize("output", [CLOSED_LOOP, PARAGRAPH_LOOP])
def test_loops_that_closed_before_the_cap_are_degenerate(output):
    assert degeneration_reason(output, hit_token_limit=False) == "closed_loop"
    assert degeneration_reason(output, False, PageAnswer(text="O requerente declara que reside aqui.")) == "closed_loop"


def test_header_echoed_through_the_body_is_degenerate():
    header = "TRIBUNAL DE JUSTIÇA DO ESTADO DE MINAS GERAIS"
    reference = PageAnswer(header=header, text="Apelação cível. Recurso provido.")
    looped = PageAnswer(header=header, text=f"Apelação cível. {header} Recurso {header} provido. {header}").to_json()
    assert degeneration_reason(looped, False, reference) == "furniture_repeat"
    assert degeneration_reason(looped, False) == "furniture_repeat"  # the predicted header alone is enough
    plain = f"{header}\nApelação cível.\n{header}\n{header}\nRecurso provido."
    assert degeneration_reason(plain, False, reference) == "furniture_repeat"


TABLE = """| Item | Descrição | Quantidade | Valor unitário | Valor total |
|---|---|---|---|---|
| 1 | Papel A4 resma | 10 | R$ 25,00 | R$ 250,00 |
| 2 | Caneta esferográfica azul | 50 | R$ 1,50 | R$ 75,00 |
| 3 | Caneta esferográfica preta | 50 | R$ 1,50 | R$ 75,00 |
| 4 | Grampeador | 2 | R$ 30,00 | R$ 60,00 |
| 5 | Grampos caixa | 10 | R$ 5,00 | R$ 50,00 |
| 6 | Pasta suspensa | 20 | R$ 2,00 | R$ 40,00 |
| 7 | Envelope pardo | 100 | R$ 0,50 | R$ 50,00 |
| 8 | Clipes caixa | 10 | R$ 3,00 | R$ 30,00 |
| 9 | Borracha | 20 | R$ 1,00 | R$ 20,00 |
| 10 | Lápis | 40 | R$ 0,80 | R$ 32,00 |"""
LIST = "\n".join(f"{n}. Fica o réu intimado a comparecer na audiência do dia {n + 10} de maio." for n in range(1, 13))
FORM = "\n".join(f"Nome: {name}\nCPF: {cpf}\nAssinatura: ____________" for name, cpf in [
    ("Maria da Silva", "123.456.789-00"), ("João Souza", "987.654.321-00"), ("Ana Lima", "111.222.333-44"),
    ("Pedro Alves", "555.666.777-88"), ("Carla Dias", "999.888.777-66"), ("Rita Melo", "222.333.444-55"),
    ("Luís Rocha", "444.555.666-77"), ("José Nunes", "777.888.999-00"), ("Paula Reis", "333.444.555-66")])
CHECKLIST = "\n".join(f"{question} ( ) Sim ( ) Não" for question in [
    "Possui dependentes?", "Possui imóvel?", "Possui veículo?", "É servidor público?", "Recebe benefício?",
    "Tem plano de saúde?", "Declara imposto de renda?", "Possui conta bancária?", "Está empregado?"])
RULED = "Declaro para os devidos fins.\n" + "\n".join(["________________________"] * 3) + "\nLocal e data: ......."
ZEROS = "| Receita | " + " | ".join(["0,00"] * 12) + " |\n| Despesa | " + " | ".join(["-"] * 12) + " |"
STUTTER = "Era muito muito muito muito muito muito muito muito muito muito bom."


LEGITIMATE = [TABLE, LIST, FORM, CHECKLIST, RULED, ZEROS, STUTTER]


# ZEROS cut at the cap ends in a repeated unit, which counts there: see the next test.
@pytest.mark.parametrize("text, hit_token_limit", [(text, hit) for text in LEGITIMATE for hit in (False, True)
                                                   if not (hit and text is ZEROS)])
def test_legitimate_repetition_is_not_degenerate(text, hit_token_limit):
    reference = PageAnswer(header="PREFEITURA MUNICIPAL DE CAMPINAS", text=text)
    assert degeneration_reason(text, hit_token_limit) == ""
    assert degeneration_reason(reference.to_json(), hit_token_limit, reference) == ""


def test_at_the_cap_any_repeated_tail_counts_even_a_table_row():
    # The accepted trade-off of the tail detector: the answer was cut, and what it was cut in repeats.
    assert degeneration_reason(ZEROS, hit_token_limit=True) == "tail_loop"
    assert degeneration_reason(ZEROS + "\n| Saldo | 12,00 |", hit_token_limit=True) == ""


def test_repetition_the_reference_has_is_excused_but_a_longer_run_is_not():
    sheet = "LISTA DE PRESENÇA\n" + "Nome: ________ Assinatura: ________\n" * 10
    reference = PageAnswer(text=sheet)
    assert degeneration_reason(sheet, False) == "closed_loop"  # without the page, a blank sheet looks like a loop
    assert degeneration_reason(sheet.replace("________", "_____"), False, reference) == ""  # ragged rules match
    looped = "LISTA DE PRESENÇA\n" + "Nome: ________ Assinatura: ________\n" * 25
    assert degeneration_reason(looped, False, reference) == "closed_loop"
    header = "SECRETARIA DA FAZENDA"
    quoting = PageAnswer(header=header, text=f"A {header} informa. A {header} decide. A {header} publica.")
    assert degeneration_reason(quoting.to_json(), False, quoting) == ""  # the body names the header as often


def test_short_furniture_and_a_cut_clean_answer_are_not_degenerate():
    reference = PageAnswer(footer="1", text="Item 1, item 1, item 1 e item 1.")
    assert degeneration_reason(reference.to_json(), True, reference) == ""
    cut = PageAnswer(header="CARTÓRIO", text="Certifico que o imóvel pertence a Maria.").to_json()[:-10]
    assert degeneration_reason(cut, hit_token_limit=True) == ""


# --- composite and robustness ------------------------------------------------------------------------------------

def test_quality_score_weights_text_and_structure():
    reference = PageAnswer(header="TÍTULO DO DOCUMENTO", text="corpo do texto da página")
    perfect = _score(reference.to_json(), reference)
    assert perfect.structure_score == 1.0 and perfect.quality_score == pytest.approx(1.0)
    plain = _score(reference.to_plain_text(), reference)
    assert plain.paper_score == pytest.approx(1.0) and plain.structure_score == 0.0
    assert plain.quality_score == pytest.approx(0.8)
    partial = _score('{"text": "corpo do texto da página", "header": "TÍTULO DO DOCUMENTO"}', reference)
    assert partial.structure_score == pytest.approx(2 / 3) and partial.quality_score == pytest.approx(0.8 + 0.2 * 2 / 3)


BAD_OUTPUTS = ["", "   ", "não é JSON", '{"header": "TÍTULO", "text": "corpo do te', "[1, 2, 3]", "42", "null",
               '"só uma string"', '{"header": 1, "text": ["a"]}', '{"text": "a", "text": "corpo do texto"}',
               '{"Text": "corpo"}', "1" * 5000, "[" * 100000, "NaN", '{"text": "\\ud800"}', "\x00\x01"]


@pytest.mark.parametrize("output", BAD_OUTPUTS)
def test_bad_outputs_score_without_raising_and_stay_in_range(output):
    reference = PageAnswer(header="TÍTULO", footer="Rodapé da página", text="corpo do texto")
    for hit_token_limit in (False, True):
        page = _score(output, reference, hit_token_limit)
        for key, value in asdict(page).items():
            if isinstance(value, float):
                assert math.isfinite(value) and value >= 0, key
        for key in ("levenshtein_ratio", "bleu", "paper_score", "misplaced_rate", "structure_score", "quality_score"):
            assert 0.0 <= getattr(page, key) <= 1.0, key


def test_duplicate_keys_read_the_last_value_but_break_the_schema():
    page = _score('{"text": "a", "text": "corpo do texto"}', PageAnswer(text="corpo do texto"))
    assert page.json_valid and not page.schema_valid and page.cer == 0.0


def test_a_huge_output_scores_quickly():
    reference = PageAnswer(header="TÍTULO", text="corpo do texto " * 100)
    rng = random.Random(0)
    words = "de que o a do da em um para com não uma os no se na por mais as dos como".split()
    outputs = ['{"text": "' + "conforme o disposto " * 10000, " ".join(rng.choice(words) for _ in range(60000)),
               "".join(rng.choice("abc ,.") for _ in range(200000))]
    for output in outputs:
        assert len(output) >= 200000
        start = time.perf_counter()
        _score(output, reference, hit_token_limit=True)
        assert time.perf_counter() - start < 2.0


def test_five_hundred_typical_pages_aggregate_quickly():
    rng = random.Random(1)
    words = "de que o a do da em um para com não uma os no se na por mais as dos como mas ao ele das tem".split()
    pages = []
    for index in range(500):
        reference = PageAnswer(header="PREFEITURA MUNICIPAL", footer=f"Página {index}",
                               text=" ".join(rng.choice(words) for _ in range(450)))
        noisy = " ".join(word if rng.random() > 0.05 else rng.choice(words) for word in reference.text.split())
        pages.append((PageAnswer(header=reference.header, footer=reference.footer, text=noisy).to_json(), reference))
    start = time.perf_counter()
    summary = aggregate([_score(output, reference) for output, reference in pages])
    assert time.perf_counter() - start < 10.0  # about 2 s on a 2-core CPU
    assert summary["pages"] == 500 and 0.9 < summary["quality_score"] < 1.0


# --- aggregation -------------------------------------------------------------------------------------------------

def test_aggregate_means_overall_and_by_family():
    reference = PageAnswer(header="TÍTULO DO OFÍCIO", text="corpo do texto da página")
    exact = _score(reference.to_json(), reference, family="legal")
    plain = _score("TÍTULO DO OFÍCIO\ncorpo do texto da página", reference, family="printed")
    looped = _score("corpo do texto " + "abcdefghijklmno" * 6, reference, hit_token_limit=True, family="printed")
    closed = _score(PARAGRAPH_LOOP, reference, family="printed")
    summary = aggregate([exact, plain, looped, closed])
    assert summary["pages"] == 4 and summary["json_valid_rate"] == 0.25
    assert summary["degeneration_rate"] == 0.5 and summary["paper_degeneration_rate"] == 0.25
    assert summary["token_limit_rate"] == 0.25
    assert summary["placement_error_rate"] == pytest.approx(1 / 4)  # pooled: 1 of 4 furniture fields
    assert summary["quality_score"] == pytest.approx(sum(s.quality_score for s in (exact, plain, looped, closed)) / 4)
    assert summary["by_family"]["legal"]["json_valid_rate"] == 1.0
    assert summary["by_family"]["printed"]["pages"] == 3
    assert set(summary["by_family"]["legal"]) == set(summary) - {"by_family"}
    for key, value in summary.items():
        if key.endswith("_rate"):
            assert 0.0 <= value <= 1.0, key


def test_per_field_means_skip_pages_without_the_field():
    with_margin = _score(PageAnswer(margin="Fls. 12", text="a b").to_json(), PageAnswer(margin="Fls. 13", text="a b"))
    without = _score(PageAnswer(text="a b").to_json(), PageAnswer(text="a b"))
    summary = aggregate([with_margin, without])
    assert summary["margin_cer"] == pytest.approx(1 / 7)  # the page without a margin does not halve it
    assert summary["header_cer"] == 0.0 and summary["text_cer"] == 0.0


def test_aggregate_of_nothing_is_zeros():
    summary = aggregate([])
    assert summary["pages"] == 0 and summary["quality_score"] == 0.0 and summary["by_family"] == {}
