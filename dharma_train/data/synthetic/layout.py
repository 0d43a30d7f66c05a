"""Where every word of a PageAnswer goes: a page style drawn from the seed, then a plan of lines that fits the page.

The plan is the contract between the ground truth and the image: the renderer draws exactly the plan's lines, and
every word of every field is in the plan (or the plan fails with PageOverflow, never silently drops text). Legal
pages with numbered lines get their line numbers in the `margin` field of `PagePlan.answer`, because they are
drawn there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from PIL import ImageFont

from dharma_train.data.schema import PageAnswer
from dharma_train.data.synthetic.fonts import Face, pick_face
from dharma_train.data.synthetic.typeset import word_width

FAMILY_NAMES = ("printed", "handwritten", "legal", "general")
RELATIVE_SIZES = {"header": 0.9, "margin": 0.75, "footer": 0.75}
HEADING_SIZES = {"h1": 1.5, "h2": 1.2}
SHRINK = 0.9  # each try after an overflow uses fonts this much smaller
MIN_BODY_PX = 6
MIN_FIELD_PX = 5
LEGIBLE_BODY_PX = 9  # preferred body sizes never start below this, however small the page
BULLET = "•"
SLANTS = (-0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # handwriting shears; few, so word masks are reused


class PageOverflow(ValueError):
    """The answer does not fit on the page even at the smallest font."""


@dataclass(frozen=True)
class Hand:
    """How one writer writes: slant (shear), baseline wobble and drift, spacing and pressure."""

    slant: float = 0.0  # horizontal shear per pixel of height; positive leans right
    wobble: float = 0.08  # per-word baseline jitter, fraction of the font size
    drift_degrees: float = 1.0  # each line's baseline rises or falls by up to this angle
    heavy: bool = False  # a thicker pen


@dataclass(frozen=True)
class PageStyle:
    """Everything about a page's look that is drawn from its seed before layout."""

    family: str
    faces: dict[str, Face]  # header, margin, text, footer, heading
    body_px: int  # preferred body font size; layout shrinks it until the page fits
    columns: int = 1
    justify: bool = False
    indent: bool = False
    spacing: float = 1.25
    header_align: str = "center"
    footer_align: str = "center"
    pad: tuple[float, float] = (0.08, 0.05)  # side and top/bottom padding, fractions of width and height
    line_numbers: bool = False  # legal: body lines numbered in the left margin
    emblem: bool = False  # legal: a coat of arms left of the header
    form: bool = False  # boleto: one boxed "label: value" line per paragraph
    hand: Hand | None = None


@dataclass(frozen=True)
class Line:
    """One line of text at its place: `y` is the top of the line box, `x` where its first word starts."""

    text: str
    font: ImageFont.FreeTypeFont
    x: int
    y: int
    height: int
    width: float  # natural width of the text
    justify_to: int | None = None  # stretch the word gaps to this width
    bullet_x: int | None = None  # a list item: where its bullet goes
    paragraph: int = 0
    kind: str = "p"  # the paragraph's kind: p | h1 | h2 | li


@dataclass(frozen=True)
class TextBlock:
    """The lines of one answer field; `box` bounds them on the page (after rotation, if rotated)."""

    field: str
    lines: tuple[Line, ...]
    box: tuple[int, int, int, int]
    rotated: bool = False

    @property
    def words(self) -> list[str]:
        return [word for line in self.lines for word in line.text.split()]


@dataclass(frozen=True)
class PagePlan:
    blocks: tuple[TextBlock, ...]
    body_size: int
    scale: float
    answer: PageAnswer  # what is drawn: the given answer, plus line numbers in the margin when there are any
    style: PageStyle = field(repr=False, default=None)


@dataclass(frozen=True)
class Paragraph:
    kind: str  # p | h1 | h2 | li
    text: str


def choose_style(answer: PageAnswer, family: str, width: int, rng: random.Random) -> PageStyle:
    """The look of one page, every choice drawn from `rng`; faces are chosen among those that draw its text."""
    family = checked_family(family)
    body_text = " ".join(paragraph.text for paragraph in paragraphs(answer.text, family == "general"))
    headings = " ".join(p.text for p in paragraphs(answer.text, family == "general") if p.kind != "p")
    wide = width >= 400
    if family == "handwritten":
        face = pick_face(rng, "hand", answer.to_plain_text())
        faces = dict.fromkeys(("header", "margin", "text", "footer", "heading"), face)
        hand = Hand(slant=rng.choice(SLANTS), wobble=rng.uniform(0.03, 0.1),
                    drift_degrees=rng.uniform(0.3, 1.5), heavy=rng.random() < 0.3)
        return PageStyle(family, faces, _preferred(width, rng, 0.032, 0.045, 11), spacing=rng.uniform(1.4, 1.7),
                         header_align=rng.choice(("left", "center")), footer_align="right",
                         pad=(rng.uniform(0.06, 0.1), rng.uniform(0.04, 0.07)), hand=hand)
    if family == "legal":
        text_role = rng.choice(("serif", "serif", "sans", "mono"))
        form = _is_form(answer.text)
        faces = {"header": pick_face(rng, "bold", answer.header), "margin": pick_face(rng, "sans", answer.margin),
                 "text": pick_face(rng, text_role, body_text), "footer": pick_face(rng, "sans", answer.footer),
                 "heading": pick_face(rng, "bold", headings)}
        return PageStyle(family, faces, _preferred(width, rng, 0.021, 0.03, LEGIBLE_BODY_PX),
                         justify=not form and rng.random() < 0.6, indent=not form and rng.random() < 0.5,
                         spacing=1.6 if form else rng.uniform(1.2, 1.6),
                         pad=(rng.uniform(0.07, 0.1), rng.uniform(0.04, 0.06)),
                         line_numbers=not answer.margin and not form and rng.random() < 0.35,
                         emblem=bool(answer.header) and rng.random() < 0.4, form=form)
    text_role = rng.choice(("serif", "serif", "serif", "sans"))
    faces = {"header": pick_face(rng, rng.choice(("italic", "serif", "sans")), answer.header),
             "margin": pick_face(rng, "italic", answer.margin), "text": pick_face(rng, text_role, body_text),
             "footer": pick_face(rng, text_role, answer.footer), "heading": pick_face(rng, "bold", headings)}
    columns = 2 if wide and rng.random() < (0.35 if family == "printed" else 0.25) else 1
    return PageStyle(family, faces, _preferred(width, rng, 0.022, 0.03, LEGIBLE_BODY_PX), columns=columns,
                     justify=rng.random() < 0.7, indent=family == "printed" and rng.random() < 0.7,
                     spacing=rng.uniform(1.15, 1.35), header_align=rng.choice(("center", "center", "left", "right")),
                     footer_align=rng.choice(("center", "right")),
                     pad=(rng.uniform(0.07, 0.11), rng.uniform(0.04, 0.07)))


def plan_page(answer: PageAnswer, family: str, width: int, height: int, style: PageStyle | None = None) -> PagePlan:
    """The largest font scale (from the style's preferred size down) at which every field fits."""
    style = style or choose_style(answer, family, width, random.Random(0))
    reason = "no font size was tried"
    scale = 1.0
    while round(style.body_px * scale) >= MIN_BODY_PX:
        body_size = round(style.body_px * scale)
        try:
            blocks, drawn = _layout(answer, style, width, height, body_size)
            return PagePlan(blocks=blocks, body_size=body_size, scale=scale, answer=drawn, style=style)
        except PageOverflow as overflow:
            reason = f"{overflow} (body font {body_size} px)"
        scale *= SHRINK
    raise PageOverflow(f"{style.family} page {width}x{height}: text does not fit even at the smallest font: {reason}")


def paragraphs(text: str, markdown: bool) -> list[Paragraph]:
    """Body paragraphs, one per line of `text`; with Markdown, `# `, `## ` and `- ` lines are headings and items."""
    found = []
    for raw in text.split("\n"):
        line = " ".join(raw.split())
        if not line:
            continue
        kind = "p"
        if markdown:
            for marker, marker_kind in (("# ", "h1"), ("## ", "h2"), ("- ", "li")):
                if line.startswith(marker):
                    kind, line = marker_kind, line[len(marker):]
                    break
        found.append(Paragraph(kind, line))
    return found


def checked_family(family: str) -> str:
    if family not in FAMILY_NAMES:
        raise ValueError(f"unknown page family {family!r}; expected one of {list(FAMILY_NAMES)}")
    return family


def _preferred(width: int, rng: random.Random, low: float, high: float, floor: int) -> int:
    """A body size proportional to the page width, never below a legible floor; even above 12 px, so that
    pages share sizes and the renderer's word cache serves them."""
    size = max(floor, round(width * rng.uniform(low, high)))
    return size if size <= 12 else size - size % 2


def _is_form(text: str) -> bool:
    """Boleto-like text: every line a short "label: value" pair."""
    lines = [line for line in text.split("\n") if line.strip()]
    return len(lines) >= 2 and all(0 < line.find(": ") <= 30 for line in lines)


def _line_height(font: ImageFont.FreeTypeFont, spacing: float) -> int:
    ascent, descent = font.getmetrics()
    return max(1, round((ascent + descent) * spacing))


def _layout(answer: PageAnswer, style: PageStyle, width: int, height: int,
            body_size: int) -> tuple[tuple[TextBlock, ...], PageAnswer]:
    """Header on top, footer at the bottom, body (in columns) between, margin notes or numbers in a left strip."""
    font = {name: style.faces[name].font(max(MIN_FIELD_PX, round(body_size * size)))
            for name, size in RELATIVE_SIZES.items()}
    font["text"] = style.faces["text"].font(body_size)
    pad_x, pad_y = round(width * style.pad[0]), round(height * style.pad[1])
    strip = bool(answer.margin) or style.line_numbers
    left = round(width * 0.16) if strip else pad_x
    right = width - pad_x
    top, bottom = pad_y, height - pad_y
    blocks: list[TextBlock] = []
    gap = _line_height(font["text"], 0.8)
    if answer.header:
        header_left = pad_x + (_line_height(font["header"], 2.2) if style.emblem else 0)
        header = _stacked("header", answer.header, font["header"], header_left, right, top, style.header_align, 1.2)
        blocks.append(header)
        top = header.box[3] + gap
    if answer.footer:
        footer = _stacked("footer", answer.footer, font["footer"], pad_x, right, 0, style.footer_align, 1.2)
        footer = _shifted(footer, bottom - footer.box[3])
        blocks.append(footer)
        bottom = footer.box[1] - gap
    body = _body(answer.text, style, font["text"], left, right, top, bottom, body_size)
    blocks.append(body)
    drawn = answer
    if style.line_numbers and body.lines:
        numbers = _line_numbers(body, font["margin"], round(width * 0.03), left - max(2, round(width * 0.02)))
        blocks.append(numbers)
        drawn = replace(answer, margin="\n".join(line.text for line in numbers.lines))
    elif answer.margin:
        blocks.append(_margin(answer.margin, font["margin"], (round(width * 0.02), top, left - 2, bottom)))
    return tuple(blocks), drawn


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float, first_indent: float = 0.0,
          space_factor: float = 1.0) -> list[tuple[str, float]]:
    """Greedy word wrap keeping every word, as (line, natural width); a word wider than the column overflows."""
    space = word_width(font, " ") * space_factor
    lines: list[tuple[str, float]] = []
    words: list[str] = []
    used = 0.0
    for word in text.split():
        size = word_width(font, word)
        limit = max_width - (first_indent if not lines else 0.0)
        if size > limit:
            raise PageOverflow(f"word {word!r} is wider than the {max_width:.0f} px column")
        if words and used + space + size > limit:
            lines.append((" ".join(words), used))
            words, used = [], 0.0
        used = used + space + size if words else size
        words.append(word)
    if words:
        lines.append((" ".join(words), used))
    return lines


def _align_x(align: str, left: int, right: int, width: float) -> int:
    free = right - left - width
    return left + round({"left": 0, "center": free / 2, "right": free}[align])


def _stacked(field_name: str, text: str, font: ImageFont.FreeTypeFont, left: int, right: int, top: int,
             align: str, spacing: float) -> TextBlock:
    """Wrapped lines from `top` downwards, each part of a multi-line field (newline) starting a new line."""
    height = _line_height(font, spacing)
    lines: list[Line] = []
    for index, part in enumerate(part for part in text.split("\n") if part.strip()):
        for line, natural in _wrap(part, font, right - left):
            lines.append(Line(line, font, _align_x(align, left, right, natural), top + height * len(lines), height,
                              natural, paragraph=index))
    return TextBlock(field_name, tuple(lines), (left, top, right, top + height * len(lines)))


def _shifted(block: TextBlock, dy: int) -> TextBlock:
    left, top, right, bottom = block.box
    lines = tuple(replace(line, y=line.y + dy) for line in block.lines)
    return TextBlock(block.field, lines, (left, top + dy, right, bottom + dy), block.rotated)


def _body(text: str, style: PageStyle, font: ImageFont.FreeTypeFont, left: int, right: int, top: int, bottom: int,
          body_size: int) -> TextBlock:
    """Paragraphs wrapped to the column width, then poured into one or two columns; PageOverflow if too tall."""
    gutter = round(body_size * 1.5)
    column_width = (right - left - gutter * (style.columns - 1)) / style.columns
    space_factor = 1.25 if style.hand else 1.0  # handwriting spaces words unevenly: leave room for it
    rows: list[tuple[int, Line]] = []  # (gap above, line placed at x offset 0, y 0)
    markdown = style.family == "general"
    for index, paragraph in enumerate(paragraphs(text, markdown)):
        if paragraph.kind in HEADING_SIZES:
            line_font = style.faces["heading"].font(max(MIN_FIELD_PX, round(body_size * HEADING_SIZES[paragraph.kind])))
        else:
            line_font = font
        height = _line_height(line_font, style.spacing)
        indent = round(body_size * 2) if style.indent and paragraph.kind == "p" else 0
        hanging = round(body_size * 1.4) if paragraph.kind == "li" else 0
        wrapped = _wrap(paragraph.text, line_font, column_width - hanging, indent, space_factor)
        separated = rows and paragraph.kind != "li" and not style.form and (markdown or not style.indent)
        gap_above = round(height * 0.5) if separated else 0
        for number, (line, natural) in enumerate(wrapped):
            last = number == len(wrapped) - 1
            offset = hanging + (indent if number == 0 else 0)
            justify = (style.justify and paragraph.kind == "p" and not last and not style.hand
                       and _stretch_fits(line, natural, column_width - offset, line_font))
            rows.append((gap_above if number == 0 else 0, Line(
                line, line_font, offset, 0, height, natural,
                justify_to=round(column_width - offset) if justify else None,
                bullet_x=0 if paragraph.kind == "li" and number == 0 else None, paragraph=index,
                kind=paragraph.kind)))
    columns = _pour(rows, style.columns, bottom - top)
    lines = []
    for column, column_rows in enumerate(columns):
        x0 = left + round(column * (column_width + gutter))
        y = top
        for gap, line in column_rows:
            y += gap if y > top else 0
            lines.append(replace(line, x=x0 + line.x, y=y,
                                 bullet_x=None if line.bullet_x is None else x0 + line.bullet_x))
            y += line.height
    used = max((line.y + line.height for line in lines), default=top)
    if used > bottom:
        raise PageOverflow(f"body needs {used - top} px of height but {max(0, bottom - top)} px are free")
    return TextBlock("text", tuple(lines), (left, top, right, used))


def _stretch_fits(line: str, natural: float, target: float, font: ImageFont.FreeTypeFont) -> bool:
    """Justify a line only when its word gaps grow to at most 2.5 spaces (narrow columns would show rivers)."""
    gaps = len(line.split()) - 1
    return gaps > 0 and (target - natural) / gaps <= 1.5 * word_width(font, " ")


def _pour(rows: list[tuple[int, Line]], columns: int, free: int) -> list[list[tuple[int, Line]]]:
    """Split the rows into columns of about equal height (a heading never ends a column)."""
    if columns == 1 or len(rows) < 2 * columns:
        return [rows]
    total = sum(gap + line.height for gap, line in rows)
    split, height = len(rows), 0
    for index, (gap, line) in enumerate(rows):
        height += gap + line.height
        if height >= total / 2:
            split = index + 1
            break
    while split > 1 and rows[split - 1][1].kind in HEADING_SIZES:
        split -= 1
    return [rows[:split], rows[split:]]


def _line_numbers(body: TextBlock, font: ImageFont.FreeTypeFont, left: int, right: int) -> TextBlock:
    """Every body line numbered (every fifth on long pages), right-aligned in the strip beside the line."""
    step = 1 if len(body.lines) < 10 else 5
    lines = []
    for number, line in enumerate(body.lines, start=1):
        if number % step:
            continue
        label = str(number)
        natural = word_width(font, label)
        if natural > right - left:
            raise PageOverflow(f"line number {label} is wider than the {right - left} px margin")
        ascent_gap = line.font.getmetrics()[0] - font.getmetrics()[0]
        lines.append(Line(label, font, round(right - natural), line.y + max(0, ascent_gap), line.height, natural))
    top = min(line.y for line in lines) if lines else body.box[1]
    bottom = max(line.y + line.height for line in lines) if lines else body.box[1]
    return TextBlock("margin", tuple(lines), (left, top, right, bottom))


def _margin(text: str, font: ImageFont.FreeTypeFont, strip: tuple[int, int, int, int]) -> TextBlock:
    """Short notes sit upright in the margin strip; longer ones (stamps) run up the strip, rotated 90 degrees."""
    left, top, right, bottom = strip
    height = _line_height(font, 1.1)
    try:
        upright = _wrap(text, font, right - left)
        if len(upright) <= 2 and top + height * len(upright) <= bottom:
            lines = tuple(Line(line, font, left, top + height * index, height, natural)
                          for index, (line, natural) in enumerate(upright))
            return TextBlock("margin", lines, (left, top, right, top + height * len(upright)))
    except PageOverflow:
        pass
    wrapped = _wrap(text, font, bottom - top)
    thickness = height * len(wrapped)
    if thickness > right - left:
        raise PageOverflow(f"margin note {text!r} needs a {thickness} px strip but the margin is {right - left} px")
    length = round(max(natural for _, natural in wrapped))
    middle = (top + bottom) // 2
    # Line coordinates of a rotated block are in the unrotated strip: x along the note, y across it.
    lines = tuple(Line(line, font, 0, height * index, height, natural) for index, (line, natural) in enumerate(wrapped))
    return TextBlock("margin", lines, (left, middle - length // 2, left + thickness, middle - length // 2 + length),
                     rotated=True)
