"""Lines set from cached glyphs: word widths for layout, one coverage mask per line for drawing.

Pillow rasterises every glyph again on every call, and at 1024 px that was most of a page's time. Here each
(font, character) is rasterised once per process into a numpy array, and a line is assembled from its glyphs at
their advances plus the font's kerning (what Pillow's BASIC layout does itself), so a page costs one paste per
line. Handwriting moves words off the baseline, varies their pressure and slants the whole line here as well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter, ImageFont


@lru_cache(maxsize=65536)
def word_width(font: ImageFont.FreeTypeFont, word: str) -> float:
    """Advance width of `word`: its glyphs' advances plus kerning between neighbours."""
    if len(word) < 2:
        return _advance(font, word)
    return (sum(_advance(font, char) for char in word)
            + sum(_kerning(font, word[index:index + 2]) for index in range(len(word) - 1)))


def line_mask(font: ImageFont.FreeTypeFont, words: Sequence[str], pens: Sequence[float],
              rises: Sequence[int] | None = None, pressures: Sequence[float] | None = None, slant: float = 0.0,
              heavy: bool = False) -> tuple[Image.Image, int, int]:
    """Coverage mask of `words` whose pens start at `pens` on the baseline (raised by `rises`, inked at
    `pressures` 0..1), sheared by `slant` (positive leans right); returns it with its offset from the line's
    pen origin on the baseline."""
    placed = []
    for index, word in enumerate(words):
        x = pens[index]
        rise = rises[index] if rises else 0
        for position, char in enumerate(word):
            glyph, left, top = _glyph(font, char)
            if glyph.size:
                placed.append((glyph, round(x) + left, top - rise, pressures[index] if pressures else 1.0))
            x += _advance(font, char)
            if position + 1 < len(word):
                x += _kerning(font, word[position:position + 2])
    if not placed:
        return Image.new("L", (1, 1), 0), 0, 0
    left = min(x for _, x, _, _ in placed)
    top = min(y for _, _, y, _ in placed)
    right = max(x + glyph.shape[1] for glyph, x, _, _ in placed)
    bottom = max(y + glyph.shape[0] for glyph, _, y, _ in placed)
    canvas = np.zeros((bottom - top, right - left), dtype=np.uint8)
    for glyph, x, y, pressure in placed:
        target = canvas[y - top:y - top + glyph.shape[0], x - left:x - left + glyph.shape[1]]
        ink = glyph if pressure >= 1.0 else (glyph * pressure).astype(np.uint8)
        np.maximum(target, ink, out=target)  # union: neighbouring glyphs may overlap
    if slant:
        canvas, shift = _sheared(canvas, slant, baseline_row=-top)
        left -= shift
    mask = Image.fromarray(canvas, mode="L")
    if heavy:
        mask = mask.filter(ImageFilter.MaxFilter(3))
    return mask, left, top


def _sheared(canvas: np.ndarray, slant: float, baseline_row: int) -> tuple[np.ndarray, int]:
    """Shift each row right by slant x (its height above the baseline), interpolating between pixels."""
    height, width = canvas.shape
    shifts = slant * (baseline_row - np.arange(height))
    low = math.floor(float(shifts.min()))
    out = np.zeros((height, width + math.ceil(float(shifts.max())) - low + 1), dtype=np.float32)
    for row in range(height):
        offset = shifts[row] - low
        whole = int(offset)
        part = offset - whole
        out[row, whole:whole + width] += canvas[row] * (1.0 - part)
        out[row, whole + 1:whole + 1 + width] += canvas[row] * part
    return np.clip(out, 0, 255).astype(np.uint8), -low


@lru_cache(maxsize=16384)
def _glyph(font: ImageFont.FreeTypeFont, char: str) -> tuple[np.ndarray, int, int]:
    """One character rasterised once: its coverage and its offset from the pen position on the baseline."""
    core, (left, top) = font.getmask2(char, mode="L", anchor="ls")
    glyph = np.frombuffer(bytes(core), dtype=np.uint8).reshape(core.size[1], core.size[0])
    return glyph, left, top


@lru_cache(maxsize=65536)
def _advance(font: ImageFont.FreeTypeFont, text: str) -> float:
    return font.getlength(text)


@lru_cache(maxsize=65536)
def _kerning(font: ImageFont.FreeTypeFont, pair: str) -> float:
    """How much closer (negative) or further apart the font sets these two characters than their advances say."""
    return _advance(font, pair) - _advance(font, pair[0]) - _advance(font, pair[1])
