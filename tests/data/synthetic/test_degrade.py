import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dharma_train.data.synthetic.degrade import Degradation, degrade, sample_degradation


def _page(mode="L"):
    page = Image.new(mode, (300, 420), 240 if mode == "L" else (240, 238, 230))
    ImageDraw.Draw(page).rectangle((60, 150, 240, 170), fill=20 if mode == "L" else (20, 20, 20))
    return page


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_same_seed_same_pixels_and_the_mode_and_size_are_kept(mode):
    first = degrade(_page(mode), random.Random(4))
    assert first.tobytes() == degrade(_page(mode), random.Random(4)).tobytes()
    assert first.tobytes() != degrade(_page(mode), random.Random(5)).tobytes()
    assert (first.mode, first.size) == (mode, (300, 420))


def test_no_degradation_leaves_the_page_alone():
    page = _page()
    assert degrade(page, random.Random(0), Degradation.none()).tobytes() == page.tobytes()


@pytest.mark.parametrize("effect, kwargs", [
    ("skew", {"skew_degrees": 1.5}), ("photo", {"photo": True}), ("blur", {"blur": 1.0}),
    ("texture", {"texture": 0.08}), ("light", {"light": 0.25}), ("contrast", {"contrast": (60, 210)}),
    ("noise", {"noise": 6.0}), ("dust", {"dust": 60}),
])
def test_each_effect_changes_the_page_but_keeps_the_ink_readable(effect, kwargs):
    page = _page()
    out = np.asarray(degrade(page, random.Random(1), Degradation(**kwargs)), dtype=np.int16)
    assert (out != np.asarray(page)).any(), effect
    ink, paper = out[155:166, 80:220].mean(), out[300:400, 40:260].mean()
    assert paper - ink > 100, f"{effect}: ink {ink:.0f} vs paper {paper:.0f}"


def test_the_strongest_sampled_settings_keep_text_darker_than_paper():
    for seed in range(40):
        out = np.asarray(degrade(_page(), random.Random(seed)), dtype=np.int16)
        assert out[300:400, 40:260].mean() - out[158:163, 90:210].mean() > 60, seed


def test_sampling_mixes_clean_and_degraded_pages():
    specs = [sample_degradation(random.Random(seed)) for seed in range(200)]
    assert 10 < sum(spec.photo for spec in specs) < 60
    assert 50 < sum(spec.skew_degrees != 0 for spec in specs) < 150
    assert any(spec.noise == 0 for spec in specs) and any(spec.noise > 0 for spec in specs)
