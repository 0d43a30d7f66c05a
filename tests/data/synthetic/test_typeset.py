import numpy as np
import pytest
from PIL import Image, ImageDraw

from dharma_train.data.synthetic.fonts import faces
from dharma_train.data.synthetic.typeset import line_mask, word_width

WORDS = ["Ação", "coração,", "Você", "nº", "1.234,56", "AVATAR", "Tómbola"]


@pytest.mark.parametrize("role", ["serif", "sans", "hand"])
def test_word_width_is_what_pillow_measures(role):
    font = faces(role)[0].font(28)
    for word in WORDS:
        assert word_width(font, word) == pytest.approx(font.getlength(word), abs=0.01)


@pytest.mark.parametrize("role", ["serif", "mono", "hand"])
def test_a_line_looks_like_pillows_own_drawing(role):
    """Assembled from cached glyphs, a line covers the same pixels as Pillow drawing the text in one call."""
    font = faces(role)[0].font(32)
    text = "Certidão de nascimento nº 123"
    words = text.split()
    pens, x = [], 0.0
    for word in words:
        pens.append(x)
        x += word_width(font, word) + word_width(font, " ")
    ours = Image.new("L", (900, 120), 0)
    mask, left, top = line_mask(font, words, pens)
    ours.paste(255, (20 + left, 80 + top), mask)
    pillow = Image.new("L", (900, 120), 0)
    ImageDraw.Draw(pillow).text((20, 80), text, font=font, fill=255, anchor="ls")
    a, b = np.asarray(ours) > 100, np.asarray(pillow) > 100
    overlap = (a & b).sum() / max(1, (a | b).sum())
    assert overlap > 0.85, overlap


def test_rises_pressure_and_slant_change_the_mask():
    font = faces("hand")[0].font(30)
    words, pens = ["uma", "linha"], [0.0, 60.0]
    flat, _, flat_top = line_mask(font, words, pens)
    raised, _, raised_top = line_mask(font, words, pens, rises=[0, 8])
    assert raised_top == flat_top - 8 and raised.height == flat.height + 8
    faint, _, _ = line_mask(font, words, pens, pressures=[0.5, 0.5])
    assert np.asarray(faint).max() <= 128 < np.asarray(flat).max()
    slanted, slanted_left, _ = line_mask(font, words, pens, slant=0.3)
    assert slanted.width > flat.width


def test_an_empty_line_is_an_empty_mask():
    mask, _, _ = line_mask(faces("serif")[0].font(20), [], [])
    assert np.asarray(mask).max() == 0
