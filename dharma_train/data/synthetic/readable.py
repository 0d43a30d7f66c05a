"""Short pages a small model can read: about 448 px wide, body type of at least 17 px, a header, a few lines, a footer.

The default recipe's pages (224 x 308, 9-11 px body type) put a glyph under one 14 px vision patch; these put it
above one. Same families, same `{header, margin, footer, text}` answers and the same renderer as every other
page: only the size, the word budget and a floor under the body type differ. Nothing here changes the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dharma_train.data.pages import PageSet
from dharma_train.data.synthetic.generate import generate_pages, render_fitting_page
from dharma_train.data.synthetic.text import FAMILIES

READABLE_WIDTH, READABLE_HEIGHT = 448, 336  # 16 x 12 merged vision tokens of 28 px
READABLE_MAX_WORDS = 24  # a header line, three to five body lines and a footer at this size
# The body type's floor per family (header and footer are drawn at 0.9 and 0.75 of it); the handwriting faces
# draw small for their size, so their floor is higher.
READABLE_BODY_PX = {"printed": 17, "legal": 17, "handwritten": 22}


def readable_page(seed: str, family: str, degrade: bool = True):
    """(image, answer) of one short readable page, drawn in memory from `seed` (the pretraining's data workers)."""
    rendered = render_fitting_page(seed, family, READABLE_WIDTH, READABLE_HEIGHT, READABLE_MAX_WORDS, degrade,
                                   READABLE_BODY_PX[family])
    return rendered.image, rendered.answer


def generate_readable_pages(out_dir: str | Path, n: int, seed: int, families: Sequence[str] = FAMILIES,
                            task: str = "plain", **kw) -> PageSet:
    """A page set on disk (as `generate_pages` writes it) of short readable pages."""
    return generate_pages(out_dir, n, seed, width=READABLE_WIDTH, height=READABLE_HEIGHT, families=families,
                          task=task, max_words=READABLE_MAX_WORDS, min_body_px=READABLE_BODY_PX, **kw)

