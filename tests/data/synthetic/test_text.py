import random
import re

import pytest
from faker import Faker

from dharma_train.data.synthetic.text import (
    FAMILIES,
    ROOMY_PAGE_WORDS,
    bounded_paragraph,
    format_date,
    format_reais,
    make_answer,
)

ACCENTS = set("çãõéáêíóú")


def _answer(seed, family, **kw):
    faker = Faker("pt_BR")
    faker.seed_instance(seed)
    return make_answer(random.Random(seed), faker, family, **kw)


def _sample(family, count=30, **kw):
    return [_answer(seed, family, **kw) for seed in range(count)]


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_gives_the_same_answer(family):
    assert _answer(7, family) == _answer(7, family)


@pytest.mark.parametrize("family", FAMILIES)
def test_different_seeds_give_different_answers(family):
    texts = {answer.to_json() for answer in _sample(family, count=10)}
    assert len(texts) >= 9


@pytest.mark.parametrize("family", FAMILIES)
def test_every_page_has_bounded_body_text(family):
    for answer in _sample(family):
        assert answer.text.strip()
        assert len(answer.text.split()) <= 40


def test_accents_appear_across_a_sample():
    seen = set()
    for family in FAMILIES:
        family_chars = set("".join(answer.to_plain_text() for answer in _sample(family)))
        assert family_chars & ACCENTS, f"{family} pages never use an accent"
        seen |= family_chars
    assert seen >= ACCENTS, f"never produced {sorted(ACCENTS - seen)}"


def test_body_text_is_portuguese_not_lorem_ipsum():
    words = " ".join(answer.text.lower() for family in FAMILIES for answer in _sample(family, count=10)).split()
    assert not {"lorem", "ipsum", "dolor"} & set(words)
    assert {"de", "que", "a"} <= set(words)


def test_legal_pages_look_like_legal_pages():
    for answer in _sample("legal"):
        assert answer.header == answer.header.upper()
        assert answer.footer
        assert re.search(r"\d", answer.footer), "a legal footer carries a page or folio number"
    margins = {answer.margin for answer in _sample("legal")}
    assert any(margin.startswith("Fls. ") or margin == "CONFERE COM O ORIGINAL" for margin in margins)


def test_printed_pages_have_a_header_and_a_page_number():
    for answer in _sample("printed"):
        assert answer.header
        assert re.search(r"\d", answer.footer)


def test_handwritten_pages_often_lack_a_header():
    headers = [answer.header for answer in _sample("handwritten", count=40)]
    assert 0 < headers.count("") < len(headers)


def test_max_words_is_respected():
    for family in FAMILIES:
        for answer in _sample(family, count=10, max_words=6):
            assert 1 <= len(answer.text.split()) <= 6


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown page family"):
        _answer(0, "poster")
    with pytest.raises(ValueError, match="max_words"):
        _answer(0, "printed", max_words=0)


def test_brazilian_formats():
    assert format_reais(1234.56) == "R$ 1.234,56"
    assert format_reais(7) == "R$ 7,00"
    assert format_reais(1_000_000) == "R$ 1.000.000,00"
    for seed in range(20):
        assert re.fullmatch(r"(0[1-9]|[12]\d)/(0[1-9]|1[0-2])/(19[5-9]\d|20[0-2]\d)", format_date(random.Random(seed)))


def test_bounded_paragraph_keeps_whole_sentences():
    sentences = ["Um dois três.", "Quatro cinco.", "Seis sete oito nove."]
    assert bounded_paragraph(sentences, 5) == "Um dois três. Quatro cinco."
    assert bounded_paragraph(sentences, 4) == "Um dois três."
    assert bounded_paragraph(sentences, 2) == "Um dois"


def test_forms_articles_and_letterheads_need_a_roomy_page():
    """Boletos, journal articles and two-line letterheads come with page budgets of ROOMY_PAGE_WORDS and more."""
    def rich(answer):
        return "Linha digitável" in answer.text or "\n" in answer.header or ", v. " in answer.footer

    small = [_answer(seed, family) for family in ("printed", "legal") for seed in range(60)]
    roomy = [_answer(seed, family, max_words=ROOMY_PAGE_WORDS) for family in ("printed", "legal") for seed in range(60)]
    assert not any(rich(answer) for answer in small)
    assert sum(rich(answer) for answer in roomy) > 20
    assert any("Linha digitável" in answer.text for answer in roomy)
