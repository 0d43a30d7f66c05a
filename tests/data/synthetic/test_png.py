import numpy as np
import pytest
from PIL import Image

from dharma_train.data.synthetic.png import write_png


@pytest.mark.parametrize("mode, shape", [("L", (37, 53)), ("RGB", (41, 29, 3))])
def test_pillow_reads_back_the_exact_pixels(tmp_path, mode, shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    write_png(Image.fromarray(pixels, mode=mode), tmp_path / "page.png")
    with Image.open(tmp_path / "page.png") as image:
        image.load()
        assert image.format == "PNG" and image.mode == mode
        assert np.array_equal(np.asarray(image), pixels)


def test_other_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="mode P"):
        write_png(Image.new("P", (4, 4)), tmp_path / "x.png")
