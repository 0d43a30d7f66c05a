import random

import pytest
from faker import Faker
from PIL import ImageFont

from dharma_train.data.render import find_font_path, plan_page, render_page
from dharma_train.data.schema import FIELDS, PageAnswer
from dharma_train.data.text import FAMILIES, make_answer

PORTUGUESE = "ç ã õ é á ê í ó ú à â ô Ç Ã Õ É Á Ê Í Ó Ú nº 1º ª — R$ 1.234,56"


def _answer(seed, family):
    faker = Faker("pt_BR")
    faker.seed_instance(seed)
    return make_answer(random.Random(seed), faker, family)


def _words(text):
    return text.split()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(224, 308), (1024, 1408)])
def test_image_has_the_requested_size(family, size):
    image = render_page(_answer(1, family), family, *size, random.Random(1))
    assert image.size == size
    assert image.mode == "RGB"


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_draws_the_same_pixels(family):
    answer = _answer(2, family)
    first = render_page(answer, family, 224, 308, random.Random(5))
    second = render_page(answer, family, 224, 308, random.Random(5))
    third = render_page(answer, family, 224, 308, random.Random(6))
    assert first.tobytes() == second.tobytes()
    assert first.tobytes() != third.tobytes()


@pytest.mark.parametrize("family", FAMILIES)
def test_plan_draws_every_word_of_every_field(family):
    for seed in range(15):
        answer = _answer(seed, family)
        plan = plan_page(answer, family, 224, 308)
        drawn = {block.field: " ".join(block.lines) for block in plan.blocks}
        for field in FIELDS:
            assert _words(drawn.get(field, "")) == _words(getattr(answer, field)), (seed, field)


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_stay_on_the_page_and_apart(family):
    for seed in range(15):
        plan = plan_page(_answer(seed, family), family, 224, 308)
        boxes = {block.field: block.box for block in plan.blocks}
        for left, top, right, bottom in boxes.values():
            assert 0 <= left < right <= 224 and 0 <= top <= bottom <= 308
        if "header" in boxes:
            assert boxes["header"][3] <= boxes["text"][1]
        if "footer" in boxes:
            assert boxes["text"][3] <= boxes["footer"][1]
        if "margin" in boxes:
            assert boxes["margin"][2] <= boxes["text"][0]


def test_long_text_shrinks_the_font_and_keeps_every_word():
    short = PageAnswer(header="Capítulo 1", footer="12", text="Uma frase curta e simples.")
    long = PageAnswer(header="Capítulo 1", footer="12", text=" ".join(["informação"] * 70))
    assert plan_page(short, "printed", 224, 308).body_size == 10
    plan = plan_page(long, "printed", 224, 308)
    assert plan.body_size < 10
    body = next(block for block in plan.blocks if block.field == "text")
    assert _words(" ".join(body.lines)) == _words(long.text)
    render_page(long, "printed", 224, 308, random.Random(0))  # and it draws


def test_text_that_cannot_fit_raises_instead_of_being_dropped():
    answer = PageAnswer(text=" ".join(["procuração"] * 400))
    with pytest.raises(ValueError, match="does not fit"):
        plan_page(answer, "legal", 224, 308)
    with pytest.raises(ValueError, match="does not fit"):
        render_page(answer, "legal", 224, 308, random.Random(0))


def test_a_word_wider_than_the_column_is_named():
    answer = PageAnswer(text="inconstitucionalissimamente" * 4)
    with pytest.raises(ValueError, match="inconstitucionalissimamente"):
        plan_page(answer, "printed", 224, 308)


def test_a_long_stamp_runs_up_the_margin():
    answer = PageAnswer(header="CARTÓRIO", margin="CONFERE COM O ORIGINAL", footer="fls. 2", text="Certifico que sim.")
    margin = next(block for block in plan_page(answer, "legal", 224, 308).blocks if block.field == "margin")
    assert margin.rotated
    left, top, right, bottom = margin.box
    assert bottom - top > right - left


def test_the_font_draws_portuguese_accents():
    answer = PageAnswer(header=PORTUGUESE, text=PORTUGUESE, footer=PORTUGUESE, margin="Fls. 1")
    for family in FAMILIES:
        render_page(answer, family, 1024, 1408, random.Random(0))


def test_pillow_default_font_would_have_drawn_boxes():
    """Why render.py finds a TrueType font: the bundled default draws ç and ã as the same missing-glyph box."""
    default = ImageFont.load_default(size=16)
    assert bytes(default.getmask("ç")) == bytes(default.getmask("\U0010fffd"))
    assert find_font_path("serif").suffix == ".ttf"


def test_a_character_without_a_glyph_is_refused():
    with pytest.raises(ValueError, match="no glyph"):
        plan_page(PageAnswer(text="漢字"), "printed", 224, 308)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown page family"):
        render_page(PageAnswer(text="olá"), "poster", 224, 308, random.Random(0))


def test_degrade_adds_noise_and_its_absence_leaves_clean_paper():
    answer = PageAnswer(text="Olá, mundo.")
    clean = render_page(answer, "printed", 224, 308, random.Random(0), degrade=False)
    noisy = render_page(answer, "printed", 224, 308, random.Random(0), degrade=True)
    top_row = lambda image: {image.getpixel((x, 0)) for x in range(224)}  # noqa: E731
    assert len(top_row(clean)) == 1
    assert len(top_row(noisy)) > 10


def test_text_is_actually_drawn():
    answer = PageAnswer(text="Olá, mundo. " * 5)
    image = render_page(answer, "printed", 224, 308, random.Random(0), degrade=False).convert("L")
    body = next(block for block in plan_page(answer, "printed", 224, 308).blocks if block.field == "text")
    darkest, _ = image.crop(body.box).getextrema()
    assert darkest < 100
    assert image.crop((0, 280, 224, 308)).getextrema()[0] > 200  # nothing below the text: no footer was asked for
