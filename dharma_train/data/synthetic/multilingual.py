"""Mixed-language pages for the general-OCR rung: sections in Portuguese, English, Spanish, French, German, Italian.

The body is Markdown, the format general OCR models (olmOCR, Nanonets-OCR) answer in: a `# ` title, `## `
section headings, paragraphs separated by a blank line and `- ` list items. The renderer draws headings larger
and in bold and list items behind a bullet, so the Markdown is what the page shows. Faker's lorem provider has
word lists in each of these languages; Portuguese paragraphs come from text.py's templates, because Faker's
pt_BR lorem is Latin.
"""

from __future__ import annotations

import random
from functools import lru_cache

from faker import Faker

from dharma_train.data.schema import PageAnswer
from dharma_train.data.synthetic.text import (
    BOOK_TITLES,
    OBJECTS,
    PRINTED_SENTENCES,
    _composed_printed,
    _fill,
    bounded_paragraph,
    slot_values,
)

GENERAL_FAMILY = "general"
LANGUAGES = {"pt": "pt_BR", "en": "en_US", "es": "es_ES", "fr": "fr_FR", "de": "de_DE", "it": "it_IT"}
RUNNING_HEADS = {
    "pt": "Anais do Congresso", "en": "Proceedings of the Workshop", "es": "Actas del Congreso",
    "fr": "Actes du Colloque", "de": "Tagungsband", "it": "Atti del Convegno",
}
PAGE_WORDS = {"pt": "Página", "en": "Page", "es": "Página", "fr": "Page", "de": "Seite", "it": "Pagina"}


def make_general_answer(rng: random.Random, max_words: int) -> PageAnswer:
    """A page of two to four sections, each in a language of its own; a seed fixes every word.

    The word budget is shared between the sections, so even a short page mixes languages.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    languages = rng.sample(sorted(LANGUAGES), rng.randint(2, min(4, len(LANGUAGES))))
    fakers = {language: _seeded_faker(language, rng) for language in languages}
    title = f"# {_title(rng, languages[0], fakers[languages[0]])}"
    if _words(title) >= max_words:
        title = " ".join(title.split()[:max_words + 1])  # "#" plus max_words words
        languages = languages[:1]
    blocks = [title]
    budget = max_words - _words(title)
    for index, language in enumerate(languages):
        share = budget // (len(languages) - index)
        section = _section(rng, language, fakers[language], heading=index > 0, max_words=share)
        blocks.extend(section)
        budget -= sum(_words(block) for block in section)
    head_language = languages[0]
    header = RUNNING_HEADS[head_language] if rng.random() < 0.6 else ""
    footer = f"{PAGE_WORDS[head_language]} {rng.randint(1, 300)}" if rng.random() < 0.7 else ""
    return PageAnswer(header=header, margin="", footer=footer, text="\n\n".join(blocks))


def _section(rng: random.Random, language: str, faker: Faker, heading: bool, max_words: int) -> list[str]:
    """A heading (except for the first section, under the title), a paragraph, sometimes a short list.

    Every block that is started is whole; a section too small for its heading and three words is left out.
    """
    blocks = [f"## {_title(rng, language, faker)}"] if heading else []
    left = max_words - sum(_words(block) for block in blocks)
    if left < 3:
        return []
    paragraph = bounded_paragraph(_sentences(rng, language, faker), left)
    blocks.append(paragraph)
    left -= _words(paragraph)
    if rng.random() < 0.35:
        items = []
        for _ in range(rng.randint(2, 4)):
            item = _phrase(rng, language, faker)
            if _words(item) > left:
                break
            items.append(f"- {item}")
            left -= _words(item)
        if items:
            blocks.append("\n".join(items))
    return blocks


def _sentences(rng: random.Random, language: str, faker: Faker) -> list[str]:
    count = rng.randint(2, 5)
    if language == "pt":
        fields = slot_values(rng, faker)
        return [_fill(rng.choice(PRINTED_SENTENCES), fields) if rng.random() < 0.5
                else _composed_printed(rng, fields) for _ in range(count)]
    return [faker.sentence(nb_words=rng.randint(5, 12)) for _ in range(count)]


def _title(rng: random.Random, language: str, faker: Faker) -> str:
    if language == "pt":
        return rng.choice(BOOK_TITLES)
    return faker.sentence(nb_words=rng.randint(2, 4)).rstrip(".")


def _phrase(rng: random.Random, language: str, faker: Faker) -> str:
    """A list item: a short noun phrase."""
    if language == "pt":
        phrase = rng.choice(OBJECTS)
        return phrase[:1].upper() + phrase[1:]
    return faker.sentence(nb_words=rng.randint(2, 5)).rstrip(".")


def _words(block: str) -> int:
    """Words a reader sees: Markdown markers (#, ##, -) are not counted."""
    return sum(1 for word in block.split() if word not in ("#", "##", "-"))


def _seeded_faker(language: str, rng: random.Random) -> Faker:
    faker = _faker(LANGUAGES[language])
    faker.seed_instance(rng.getrandbits(64))
    return faker


@lru_cache(maxsize=None)
def _faker(locale: str) -> Faker:
    """One Faker per locale and process (building one takes tens of milliseconds); reseeded for every page."""
    return Faker(locale)
