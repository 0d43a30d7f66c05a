import random
import re
from dataclasses import replace

import numpy as np
import pytest
from faker import Faker
from PIL import Image, ImageFont

from dharma_train.data.schema import FIELDS, PageAnswer
from dharma_train.data.synthetic.fonts import faces
from dharma_train.data.synthetic.layout import Hand, Line, PageOverflow, choose_style, paragraphs, plan_page
from dharma_train.data.synthetic.multilingual import make_general_answer
from dharma_train.data.synthetic.render import draw_line, render_page
from dharma_train.data.synthetic.text import FAMILIES, make_answer
from dharma_train.data.synthetic.typeset import word_width

ALL_FAMILIES = (*FAMILIES, "general")
PORTUGUESE = "ç ã õ é á ê í ó ú à â ô Ç Ã Õ É Á Ê Í Ó Ú nº 1º ª — R$ 1.234,56"


def _answer(seed, family, max_words=40):
    if family == "general":
        return make_general_answer(random.Random(seed), max_words)
    faker = Faker("pt_BR")
    faker.seed_instance(seed)
    return make_answer(random.Random(seed), faker, family, max_words=max_words)


def _plan(seed, family, size=(224, 308), max_words=40):
    answer = _answer(seed, family, max_words)
    style = choose_style(answer, family, size[0], random.Random(seed))
    return answer, plan_page(answer, family, *size, style)


def _words(text, family="printed"):
    """The words a reader sees: Markdown markers of general pages are not drawn."""
    return " ".join(p.text for p in paragraphs(text, family == "general")).split()


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("size", [(224, 308), (724, 1024)])
def test_image_has_the_requested_size(family, size):
    rendered = render_page(_answer(1, family), family, *size, random.Random(1))
    assert rendered.image.size == size
    assert rendered.image.mode in ("L", "RGB")


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_same_seed_draws_the_same_pixels(family):
    answer = _answer(2, family)
    first = render_page(answer, family, 224, 308, random.Random(5)).image
    second = render_page(answer, family, 224, 308, random.Random(5)).image
    third = render_page(answer, family, 224, 308, random.Random(6)).image
    assert first.tobytes() == second.tobytes()
    assert first.tobytes() != third.tobytes()


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("size, max_words", [((224, 308), 40), ((724, 1024), 200)])
def test_plan_draws_every_word_of_every_field(family, size, max_words):
    for seed in range(12):
        answer, plan = _plan(seed, family, size, max_words)
        drawn = {block.field: block.words for block in plan.blocks}
        for field in FIELDS:
            expected = getattr(plan.answer, field)
            assert drawn.get(field, []) == _words(expected, family if field == "text" else "printed"), (seed, field)
        # the plan only ever adds line numbers to an empty margin; every other field is the answer as given
        assert replace(plan.answer, margin=answer.margin) == answer
        if plan.answer.margin != answer.margin:
            assert not answer.margin and re.fullmatch(r"\d+(\n\d+)*", plan.answer.margin)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_blocks_stay_on_the_page_and_apart(family):
    for seed in range(12):
        _, plan = _plan(seed, family, (724, 1024), 200)
        boxes = {block.field: block.box for block in plan.blocks}
        for left, top, right, bottom in boxes.values():
            assert 0 <= left < right <= 724 and 0 <= top <= bottom <= 1024
        if "header" in boxes:
            assert boxes["header"][3] <= boxes["text"][1]
        if "footer" in boxes:
            assert boxes["text"][3] <= boxes["footer"][1]
        if "margin" in boxes:
            assert boxes["margin"][2] <= boxes["text"][0]


def test_render_returns_the_answer_it_draws():
    for seed in range(20):
        answer = _answer(seed, "legal")
        rendered = render_page(answer, "legal", 724, 1024, random.Random(seed))
        style = choose_style(answer, "legal", 724, random.Random(seed))
        assert rendered.answer == plan_page(answer, "legal", 724, 1024, style).answer


def test_numbered_lines_put_their_numbers_in_the_margin():
    answer = _answer(3, "legal", max_words=200)
    answer = replace(answer, margin="")
    style = replace(choose_style(answer, "legal", 724, random.Random(0)), line_numbers=True, form=False)
    plan = plan_page(answer, "legal", 724, 1024, style)
    body = next(block for block in plan.blocks if block.field == "text")
    margin = next(block for block in plan.blocks if block.field == "margin")
    step = 1 if len(body.lines) < 10 else 5
    assert plan.answer.margin == "\n".join(str(n) for n in range(step, len(body.lines) + 1, step))
    baselines = lambda lines: [line.y + line.font.getmetrics()[0] for line in lines]  # noqa: E731
    assert baselines(margin.lines) == baselines(body.lines[step - 1::step])


def test_two_columns_keep_reading_order():
    answer = _answer(4, "printed", max_words=200)
    style = replace(choose_style(answer, "printed", 724, random.Random(0)), columns=2)
    body = next(block for block in plan_page(answer, "printed", 724, 1024, style).blocks if block.field == "text")
    lefts = sorted({line.x for line in body.lines if line.x == min(line.x for line in body.lines)})
    second = [index for index, line in enumerate(body.lines) if line.x > body.box[0] + (body.box[2] - body.box[0]) / 3]
    assert lefts and second, "the body should fill two columns"
    assert second == list(range(second[0], len(body.lines))), "column two holds the lines after column one"
    assert body.lines[second[0]].y == body.box[1] or body.lines[second[0]].y < body.lines[second[0] - 1].y
    assert body.words == _words(answer.text)


def test_markdown_headings_are_larger_and_list_items_have_bullets():
    answer = PageAnswer(text="# Título da página\n\nUm parágrafo em português.\n\n## Section\n\n- first item\n"
                             "- second")
    style = choose_style(answer, "general", 724, random.Random(0))
    body = next(block for block in plan_page(answer, "general", 724, 1024, style).blocks if block.field == "text")
    sizes = {line.kind: line.font.size for line in body.lines}
    assert sizes["h1"] > sizes["h2"] > sizes["p"] == sizes["li"]
    assert [line.bullet_x is not None for line in body.lines if line.kind == "li"] == [True, True]
    assert body.words == "Título da página Um parágrafo em português. Section first item second".split()


def test_long_text_shrinks_the_font_and_keeps_every_word():
    short = PageAnswer(header="Capítulo 1", footer="12", text="Uma frase curta e simples.")
    long = PageAnswer(header="Capítulo 1", footer="12", text=" ".join(["informação"] * 70))
    style = choose_style(short, "printed", 224, random.Random(0))
    assert plan_page(short, "printed", 224, 308, style).scale == 1.0
    plan = plan_page(long, "printed", 224, 308, style)
    assert plan.body_size < style.body_px
    body = next(block for block in plan.blocks if block.field == "text")
    assert body.words == long.text.split()
    render_page(long, "printed", 224, 308, random.Random(0))  # and it draws


def test_text_that_cannot_fit_raises_instead_of_being_dropped():
    answer = PageAnswer(text=" ".join(["procuração"] * 400))
    with pytest.raises(PageOverflow, match="does not fit"):
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


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_portuguese_accents_draw_in_every_family(family):
    answer = PageAnswer(header=PORTUGUESE, text=PORTUGUESE, footer=PORTUGUESE, margin="Fls. 1")
    for seed in range(6):
        render_page(answer, family, 1024, 1408, random.Random(seed))


def test_pillow_default_font_would_have_drawn_boxes():
    """Why pages use TrueType faces: Pillow's bundled default draws ç and ã as the same missing-glyph box."""
    default = ImageFont.load_default(size=16)
    assert bytes(default.getmask("ç")) == bytes(default.getmask("\U0010fffd"))


def test_a_character_without_a_glyph_is_refused():
    with pytest.raises(ValueError, match="glyph"):
        plan_page(PageAnswer(text="漢字"), "printed", 224, 308)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown page family"):
        render_page(PageAnswer(text="olá"), "poster", 224, 308, random.Random(0))


def test_degrade_adds_noise_and_its_absence_leaves_clean_paper():
    answer = PageAnswer(text="Olá, mundo.")
    clean = render_page(answer, "printed", 224, 308, random.Random(0), degrade=False).image
    assert len({clean.getpixel((x, 0)) for x in range(224)}) == 1
    noisy_rows = 0
    for seed in range(8):
        noisy = render_page(answer, "printed", 224, 308, random.Random(seed)).image
        noisy_rows += len({noisy.getpixel((x, 150)) for x in range(224)}) > 10
    assert noisy_rows >= 4


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_text_is_actually_drawn_where_the_plan_puts_it(family):
    for seed in range(4):
        answer, plan = _plan(seed, family, (724, 1024), 120)
        image = render_page(answer, family, 724, 1024, random.Random(seed), degrade=False).image.convert("L")
        pixels = np.asarray(image)
        for block in plan.blocks:
            if block.field == "text" or not block.rotated:
                left, top, right, bottom = block.box
                assert pixels[top:bottom, left:right].min() < 130, (seed, block.field)
        body = next(block for block in plan.blocks if block.field == "text")
        below = body.box[3] + 2
        footer_top = next((b.box[1] for b in plan.blocks if b.field == "footer"), 1024)
        if footer_top - below > 100 and plan.style.family not in ("legal", "handwritten"):
            assert pixels[below + 10:footer_top - 10, body.box[0]:body.box[2]].min() > 180  # nothing else drawn


def _drawn_line(hand):
    font = faces("hand")[0].font(40)
    text = "escrevendo uma linha bem comprida para ver a letra"
    page = Image.new("L", (1600, 400), 0)
    draw_line(page, Line(text, font, 100, 150, 60, word_width(font, text)), 255, hand, random.Random(0))
    return np.asarray(page) > 128


def _rows_covered(ink):
    rows = np.nonzero(ink.any(axis=1))[0]
    return rows.max() - rows.min()


def _lean(ink):
    """How far right the ink of the top third sits compared with the bottom third (letters leaning right)."""
    rows = np.nonzero(ink.any(axis=1))[0]
    third = (rows.max() - rows.min()) // 3
    top, bottom = ink[rows.min():rows.min() + third], ink[rows.max() - third:rows.max() + 1]
    return np.nonzero(top)[1].mean() - np.nonzero(bottom)[1].mean()


def test_handwriting_moves_words_off_a_straight_baseline_and_slants():
    straight = _drawn_line(Hand(slant=0.0, wobble=0.0, drift_degrees=0.0))
    wandering = _drawn_line(Hand(slant=0.0, wobble=0.1, drift_degrees=1.5))
    assert _rows_covered(wandering) > _rows_covered(straight) + 4
    leans = [_lean(_drawn_line(Hand(slant=slant, wobble=0.0, drift_degrees=0.0))) for slant in (-0.1, 0.0, 0.3)]
    assert leans[0] + 1.5 < leans[1] < leans[2] - 1.5
