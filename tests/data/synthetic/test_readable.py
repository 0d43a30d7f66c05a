"""Readable pages: bigger type than the default pages, same answers, defaults untouched."""

import random

from dharma_train.data.pages import load_pages
from dharma_train.data.synthetic.generate import generate_pages, make_page_answer
from dharma_train.data.synthetic.layout import choose_style
from dharma_train.data.synthetic.readable import (READABLE_BODY_PX, READABLE_HEIGHT, READABLE_WIDTH,
                                                  generate_readable_pages, readable_page)
from dharma_train.data.synthetic.render import render_page


def test_readable_page_is_the_readable_size_and_reproducible():
    for family in ("printed", "handwritten", "legal"):
        image, answer = readable_page("seed/1", family)
        again, same = readable_page("seed/1", family)
        assert image.size == (READABLE_WIDTH, READABLE_HEIGHT)
        assert answer == same and image.tobytes() == again.tobytes()
        assert answer.text


def test_min_body_px_raises_the_body_type_and_zero_keeps_the_default():
    seed = "dharma-synthetic/0/3"
    answer = make_page_answer(random.Random(seed), "printed", 20, seed)
    style = choose_style(answer, "printed", READABLE_WIDTH, random.Random(seed))
    assert style.body_px < READABLE_BODY_PX["printed"]  # the default geometry sizes type below the floor
    plain = render_page(answer, "printed", READABLE_WIDTH, READABLE_HEIGHT, random.Random(seed))
    floor = render_page(answer, "printed", READABLE_WIDTH, READABLE_HEIGHT, random.Random(seed), min_body_px=0)
    raised = render_page(answer, "printed", READABLE_WIDTH, READABLE_HEIGHT, random.Random(seed), min_body_px=17)
    assert plain.image.tobytes() == floor.image.tobytes()
    assert raised.image.tobytes() != plain.image.tobytes()


def test_default_generation_is_unchanged_by_the_option(tmp_path):
    default = generate_pages(tmp_path / "a", 3, seed=5, task="plain")
    explicit = generate_pages(tmp_path / "b", 3, seed=5, task="plain", min_body_px=0)
    for one, two in zip(default.pages, explicit.pages):
        assert one.image.read_bytes() == two.image.read_bytes() and one.answer == two.answer


def test_generate_readable_pages_writes_a_loadable_set_in_three_families(tmp_path):
    pages = generate_readable_pages(tmp_path / "r", 3, seed=1)
    loaded = load_pages(tmp_path / "r")
    assert [p.family for p in loaded.pages] == ["printed", "handwritten", "legal"]
    assert all(p.answer == q.answer for p, q in zip(pages.pages, loaded.pages))
