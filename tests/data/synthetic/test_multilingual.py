import importlib
import random
import re

import pytest

from dharma_train.data.synthetic import text
from dharma_train.data.synthetic.multilingual import LANGUAGES, make_general_answer


def _vocabulary(language):
    if language == "pt":
        return set(re.findall(r"\w+", " ".join((*text.PRINTED_SENTENCES, *text.SUBJECTS, *text.VERBS, *text.OBJECTS,
                                                   *text.COMPLEMENTS, *text.BOOK_TITLES)).lower()))
    module = importlib.import_module(f"faker.providers.lorem.{LANGUAGES[language]}")
    return {word.lower() for word in module.Provider.word_list}


VOCABULARIES = {language: _vocabulary(language) for language in LANGUAGES}
# Words that only one language's generator writes: three of them on a page mean that language is there.
MARKERS = {language: words - set().union(*(v for other, v in VOCABULARIES.items() if other != language))
           for language, words in VOCABULARIES.items()}


def _answer(seed, max_words=40):
    return make_general_answer(random.Random(seed), max_words)


def test_same_seed_same_page_and_seeds_differ():
    assert _answer(3) == _answer(3)
    assert len({_answer(seed).text for seed in range(10)}) == 10


def test_pages_are_markdown_a_title_then_sections():
    for seed in range(30):
        text = _answer(seed, 200).text
        assert text.startswith("# ")
        for block in text.split("\n\n"):
            assert block.strip() == block and block
            first = block.split("\n")[0]
            if first.startswith("- "):
                assert all(line.startswith("- ") for line in block.split("\n"))
    assert any("\n## " in _answer(seed, 200).text for seed in range(30))
    assert any("\n- " in _answer(seed, 200).text for seed in range(30))


@pytest.mark.parametrize("max_words", [1, 3, 12, 40, 200])
def test_the_word_budget_is_respected(max_words):
    for seed in range(30):
        text = _answer(seed, max_words).text
        words = [word for word in text.split() if word not in ("#", "##", "-")]
        assert 1 <= len(words) <= max_words


def test_a_page_mixes_languages():
    """Accents and function words of more than one language on most pages, and every language across a sample."""
    mixed, seen = 0, set()
    for seed in range(40):
        text = _answer(seed, 120).text.lower()
        words = set(re.findall(r"\w+", text))
        languages = {language for language, markers in MARKERS.items() if len(words & markers) >= 3}
        mixed += len(languages) >= 2
        seen |= languages
    assert mixed >= 20
    assert seen >= {"pt", "en", "es", "fr", "de", "it"}


def test_header_and_footer_are_in_the_page_language():
    footers = {_answer(seed).footer.split(" ")[0] for seed in range(60)} - {""}
    assert {"Page", "Página", "Seite", "Pagina"} & footers and len(footers) >= 3
