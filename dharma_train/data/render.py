"""Draw a PageAnswer onto a page image so that every character of the ground truth is on the page, and nothing else.

Fonts: Pillow's bundled `load_default()` font has no glyphs for ç, ã, é and the other Portuguese accents (they come
out as empty boxes), so pages use a TrueType font found on the machine (DejaVu from the `fonts-dejavu-core` package,
or the copy matplotlib ships). Set DHARMA_FONT_DIR to a folder of .ttf files to choose others.
"""

from __future__ import annotations

import importlib.util
import os
import random
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from dharma_train.data.schema import FIELDS, PageAnswer

FONT_DIR_VARIABLE = "DHARMA_FONT_DIR"
FONT_FILES = {
    "serif": ("DejaVuSerif.ttf", "LiberationSerif-Regular.ttf", "NotoSerif-Regular.ttf"),
    "sans": ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf"),
    "italic": ("DejaVuSans-Oblique.ttf", "DejaVuSerif-Italic.ttf", "LiberationSerif-Italic.ttf"),
    "bold": ("DejaVuSerif-Bold.ttf", "DejaVuSans-Bold.ttf", "LiberationSerif-Bold.ttf"),
}
# Font style per field; the body style of legal pages is drawn per page from BODY_STYLES.
FAMILY_STYLES = {
    "printed": {"header": "italic", "margin": "serif", "body": "serif", "footer": "serif"},
    "handwritten": {"header": "italic", "margin": "italic", "body": "italic", "footer": "italic"},
    "legal": {"header": "bold", "margin": "sans", "body": "serif", "footer": "sans"},
}
BODY_STYLES = {"printed": ("serif",), "handwritten": ("italic",), "legal": ("serif", "sans")}
# Font size of each field relative to the body font.
RELATIVE_SIZES = {"header": 0.9, "margin": 0.75, "body": 1.0, "footer": 0.75}
BODY_SIZE_PER_WIDTH = 0.045  # 10 px on the 224 px default page, 46 px on a 1024 px page
SHRINK_STEPS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
MIN_BODY_PX = 6
MIN_FIELD_PX = 5
MISSING_GLYPH_PROBE = "\U0010fffd"  # a private-use code point no text font draws: its mask is the "no glyph" box


@dataclass(frozen=True)
class TextBlock:
    """Lines of one answer field, placed: `box` is where they go on the page (after rotation, if rotated)."""

    field: str
    lines: tuple[str, ...]
    font: ImageFont.FreeTypeFont
    box: tuple[int, int, int, int]
    line_height: int
    align: str = "left"
    rotated: bool = False


@dataclass(frozen=True)
class PagePlan:
    """Where every field goes and at what size; the renderer draws exactly these lines."""

    blocks: tuple[TextBlock, ...]
    body_size: int
    scale: float


class _Overflow(Exception):
    """A field does not fit at the current font scale."""


def render_page(answer: PageAnswer, family: str, width: int, height: int, rng: random.Random,
                degrade: bool = True) -> Image.Image:
    """The page image for `answer`; raises ValueError rather than drop text that does not fit even when shrunk."""
    body_style = rng.choice(BODY_STYLES[_checked_family(family)])
    plan = plan_page(answer, family, width, height, body_style=body_style)
    page = Image.new("RGB", (width, height), _paper_colour(rng))
    draw = ImageDraw.Draw(page)
    ink = _ink_colour(family, rng)
    for block in plan.blocks:
        colour = _stamp_colour(rng) if family == "legal" and block.field == "margin" else ink
        if block.rotated:
            _draw_rotated_block(page, block, colour)
        elif family == "handwritten" and block.field == "text":
            _draw_handwritten_block(page, draw, block, colour, rng)
        else:
            _draw_block(draw, block, colour)
    return _degraded(page, rng) if degrade else page


def plan_page(answer: PageAnswer, family: str, width: int, height: int, body_style: str | None = None) -> PagePlan:
    """The largest font scale at which every field fits; ValueError naming the overflow when none does."""
    styles = dict(FAMILY_STYLES[_checked_family(family)])
    styles["body"] = body_style or styles["body"]
    _check_glyphs(answer, styles)
    reason = "no font scale was tried"
    for scale in SHRINK_STEPS:
        body_size = round(width * BODY_SIZE_PER_WIDTH * scale)
        if body_size < MIN_BODY_PX:
            break
        try:
            return PagePlan(blocks=_layout(answer, family, width, height, styles, body_size),
                            body_size=body_size, scale=scale)
        except _Overflow as overflow:
            reason = f"{overflow} (body font {body_size} px)"
    raise ValueError(f"{family} page {width}x{height}: text does not fit even at the smallest font: {reason}")


def find_font_path(style: str) -> Path:
    """The first installed font file for `style`; a clear error instead of silently drawing boxes for accents."""
    index = _installed_fonts()
    for name in FONT_FILES[style]:
        if name in index:
            return index[name]
    raise RuntimeError(
        f"no {style} TrueType font found (looked for {list(FONT_FILES[style])} in {[str(d) for d in _font_dirs()]}); "
        f"install fonts-dejavu-core (apt) or matplotlib (pip), or point {FONT_DIR_VARIABLE} at a folder of .ttf files")


def load_font(style: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached font, because layout tries several sizes per page."""
    return _font_from_file(find_font_path(style), size)


def wrap_words(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Greedy word wrap that keeps every word; a word wider than the column is an overflow, never a silent cut."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            if font.getlength(word) > max_width:
                raise _Overflow(f"word {word!r} is wider than the {max_width:.0f} px column")
            candidate = f"{line} {word}" if line else word
            if line and font.getlength(candidate) > max_width:
                lines.append(line)
                candidate = word
            line = candidate
        if line:
            lines.append(line)
    return lines


def _checked_family(family: str) -> str:
    if family not in FAMILY_STYLES:
        raise ValueError(f"unknown page family {family!r}; expected one of {sorted(FAMILY_STYLES)}")
    return family


def _font_dirs() -> list[Path]:
    """User-chosen fonts, then matplotlib's DejaVu (a pinned dependency, so pages match across machines), then system."""
    dirs = [Path(d) for d in os.environ.get(FONT_DIR_VARIABLE, "").split(os.pathsep) if d]
    matplotlib = importlib.util.find_spec("matplotlib")
    if matplotlib and matplotlib.submodule_search_locations:
        dirs += [Path(location) / "mpl-data/fonts/ttf" for location in matplotlib.submodule_search_locations]
    dirs += [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".local/share/fonts",
             Path("/Library/Fonts"), Path("/System/Library/Fonts"), Path("C:/Windows/Fonts")]
    return dirs


@lru_cache(maxsize=1)
def _installed_fonts() -> dict[str, Path]:
    """File name -> path of every .ttf under the font folders, first folder winning; walked once per process."""
    index: dict[str, Path] = {}
    for directory in _font_dirs():
        if directory.is_dir():
            for path in sorted(directory.rglob("*.ttf")):
                index.setdefault(path.name, path)
    return index


@lru_cache(maxsize=256)
def _font_from_file(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@lru_cache(maxsize=4096)
def _has_glyph(path: Path, char: str) -> bool:
    """A character has a glyph when its bitmap differs from the font's missing-glyph box."""
    font = _font_from_file(path, 16)
    missing = font.getmask(MISSING_GLYPH_PROBE)
    drawn = font.getmask(char)
    return drawn.size != missing.size or bytes(drawn) != bytes(missing)


def _check_glyphs(answer: PageAnswer, styles: dict[str, str]) -> None:
    """Refuse text the font cannot draw: a box on the page would not match the ground truth."""
    for field in FIELDS:
        path = find_font_path(styles["body" if field == "text" else field])
        missing = sorted({char for char in getattr(answer, field) if not char.isspace() and not _has_glyph(path, char)})
        if missing:
            raise ValueError(f"font {path.name} has no glyph for {missing} in the {field!r} field")


def _layout(answer: PageAnswer, family: str, width: int, height: int, styles: dict[str, str],
            body_size: int) -> tuple[TextBlock, ...]:
    """Header on top, footer at the bottom, body between them, margin in a left strip; raises _Overflow."""
    fonts = {field: load_font(styles[field], max(MIN_FIELD_PX, round(body_size * RELATIVE_SIZES[field])))
             for field in RELATIVE_SIZES}
    spacing = 1.5 if family == "handwritten" else 1.2
    pad_x, pad_y = round(width * 0.08), round(height * 0.05)
    left = round(width * 0.16) if answer.margin else pad_x
    column_width = width - pad_x - left
    centred = "left" if family == "handwritten" else "center"
    blocks: list[TextBlock] = []
    top, bottom = pad_y, height - pad_y
    if answer.header:
        header = _stacked_block("header", answer.header, fonts["header"], (pad_x, top, width - pad_x), centred, 1.2)
        blocks.append(header)
        top = header.box[3] + _line_height(fonts["body"], 0.8)
    if answer.footer:
        footer = _stacked_block("footer", answer.footer, fonts["footer"], (pad_x, 0, width - pad_x),
                                "right" if family == "handwritten" else "center", 1.2)
        footer_height = footer.box[3] - footer.box[1]
        footer = _moved(footer, bottom - footer_height)
        blocks.append(footer)
        bottom = footer.box[1] - _line_height(fonts["body"], 0.8)
    body = _stacked_block("text", answer.text, fonts["body"], (left, top, left + column_width), "left", spacing)
    if body.box[3] > bottom:
        raise _Overflow(f"body needs {body.box[3] - top} px of height but {max(0, bottom - top)} px are free")
    blocks.append(body)
    if answer.margin:
        blocks.append(_margin_block(answer.margin, fonts["margin"], (round(width * 0.02), top, left - 2, bottom)))
    return tuple(blocks)


def _line_height(font: ImageFont.FreeTypeFont, spacing: float) -> int:
    ascent, descent = font.getmetrics()
    return round((ascent + descent) * spacing)


def _stacked_block(field: str, text: str, font: ImageFont.FreeTypeFont, span: tuple[int, int, int],
                   align: str, spacing: float) -> TextBlock:
    """Wrapped lines from the top of `span` (left, top, right) downwards."""
    left, top, right = span
    lines = tuple(wrap_words(text, font, right - left))
    line_height = _line_height(font, spacing)
    return TextBlock(field=field, lines=lines, font=font, box=(left, top, right, top + line_height * len(lines)),
                     line_height=line_height, align=align)


def _moved(block: TextBlock, top: int) -> TextBlock:
    left, old_top, right, bottom = block.box
    return TextBlock(field=block.field, lines=block.lines, font=block.font,
                     box=(left, top, right, top + bottom - old_top), line_height=block.line_height, align=block.align)


def _margin_block(text: str, font: ImageFont.FreeTypeFont, strip: tuple[int, int, int, int]) -> TextBlock:
    """Short notes sit upright in the margin strip; longer ones (stamps) run up the strip, rotated 90 degrees."""
    left, top, right, bottom = strip
    line_height = _line_height(font, 1.1)
    try:
        upright = wrap_words(text, font, right - left)
        if len(upright) <= 2 and top + line_height * len(upright) <= bottom:
            return TextBlock(field="margin", lines=tuple(upright), font=font,
                             box=(left, top, right, top + line_height * len(upright)), line_height=line_height)
    except _Overflow:
        pass
    lines = wrap_words(text, font, bottom - top)
    thickness = line_height * len(lines)
    if thickness > right - left:
        raise _Overflow(f"margin note {text!r} needs a {thickness} px strip but the margin is {right - left} px")
    length = max(round(font.getlength(line)) for line in lines)
    middle = (top + bottom) // 2
    return TextBlock(field="margin", lines=tuple(lines), font=font,
                     box=(left, middle - length // 2, left + thickness, middle - length // 2 + length),
                     line_height=line_height, rotated=True)


def _line_x(block: TextBlock, line: str) -> int:
    left, _, right, _ = block.box
    free = right - left - block.font.getlength(line)
    return left + round({"left": 0, "center": free / 2, "right": free}[block.align])


def _draw_block(draw: ImageDraw.ImageDraw, block: TextBlock, colour: tuple[int, int, int]) -> None:
    for index, line in enumerate(block.lines):
        draw.text((_line_x(block, line), block.box[1] + index * block.line_height), line, font=block.font, fill=colour)


def _draw_rotated_block(page: Image.Image, block: TextBlock, colour: tuple[int, int, int]) -> None:
    """Draw the lines flat on a mask, then turn the mask a quarter to the left so the note reads upwards."""
    left, top, right, bottom = block.box
    mask = Image.new("L", (bottom - top, right - left), 0)
    mask_draw = ImageDraw.Draw(mask)
    for index, line in enumerate(block.lines):
        mask_draw.text((0, index * block.line_height), line, font=block.font, fill=255)
    page.paste(colour, (left, top), mask.transpose(Image.Transpose.ROTATE_90))


def _draw_handwritten_block(page: Image.Image, draw: ImageDraw.ImageDraw, block: TextBlock,
                            colour: tuple[int, int, int], rng: random.Random) -> None:
    """Each line gets its own small tilt and baseline wobble, as a hand would write it; ruled paper sometimes."""
    left, top, right, _ = block.box
    size = block.font.size
    if rng.random() < 0.5:
        for index in range(len(block.lines)):
            rule_y = top + index * block.line_height + round(block.line_height * 0.8)
            draw.line((left, rule_y, right, rule_y), fill=(196, 208, 228), width=1)
    for index, line in enumerate(block.lines):
        x = _line_x(block, line) + round(rng.uniform(-0.2, 0.2) * size)
        y = top + index * block.line_height + round(rng.uniform(-0.12, 0.12) * size)
        _paste_tilted_line(page, line, block.font, (x, y), rng.uniform(-1.2, 1.2), colour)


def _paste_tilted_line(page: Image.Image, line: str, font: ImageFont.FreeTypeFont, origin: tuple[int, int],
                       degrees: float, colour: tuple[int, int, int]) -> None:
    """Rotate about the line's centre, so a tilted line stays where the layout put it."""
    ascent, descent = font.getmetrics()
    mask = Image.new("L", (round(font.getlength(line)) + 2, ascent + descent + 2), 0)
    ImageDraw.Draw(mask).text((1, 1), line, font=font, fill=255)
    tilted = mask.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
    x = origin[0] - 1 - (tilted.width - mask.width) // 2
    y = origin[1] - 1 - (tilted.height - mask.height) // 2
    page.paste(colour, (x, y), tilted)


def _paper_colour(rng: random.Random) -> tuple[int, int, int]:
    """Off-white, sometimes yellowed, so the model does not learn one exact background."""
    white = rng.randint(236, 255)
    return (white, white - rng.randint(0, 4), white - rng.randint(0, 14))


def _ink_colour(family: str, rng: random.Random) -> tuple[int, int, int]:
    if family == "handwritten":
        grey = rng.randint(55, 105)
        return (grey, grey, grey + rng.randint(0, 50))  # pencil grey to faded blue ballpoint
    dark = rng.randint(10, 40)
    return (dark, dark, dark)


def _stamp_colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.choice(((40, 60, 150), (150, 40, 45), (30, 30, 30)))


def _degraded(page: Image.Image, rng: random.Random) -> Image.Image:
    """Light scan noise and, on some pages, a slight blur; strong enough to vary, too weak to hide a character."""
    noisy = ImageChops.add(page, _gaussian_noise(page.size, rng.uniform(3, 9), rng).convert("RGB"), offset=-128)
    if rng.random() < 0.6:
        noisy = noisy.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.45) * page.width / 224))
    return noisy


def _gaussian_noise(size: tuple[int, int], sigma: float, rng: random.Random) -> Image.Image:
    """Seeded Gaussian noise centred on 128 (Image.effect_noise uses C rand(), which no seed controls)."""
    normal = statistics.NormalDist(128, sigma)
    table = [min(255, max(0, round(normal.inv_cdf((level + 0.5) / 256)))) for level in range(256)]
    return Image.frombytes("L", size, rng.randbytes(size[0] * size[1])).point(table)
