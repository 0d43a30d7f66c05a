"""Draw a page plan: every word of the ground truth on the page, plus furniture that carries no text.

Each line is one mask assembled from cached glyphs (typeset.py); handwriting moves every word on its own there:
baseline wobble and drift, uneven spacing and pen pressure, then a slant for the whole line. Rules, ruled paper,
coats of arms, form boxes, bar codes and signatures hold no characters, so they never need to appear in the
answer. Scan or photo degradation (degrade.py) comes last.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from PIL import Image, ImageDraw

from dharma_train.data.schema import PageAnswer
from dharma_train.data.synthetic.degrade import degrade as degrade_page
from dharma_train.data.synthetic.layout import BULLET, Hand, Line, PagePlan, TextBlock, choose_style, plan_page
from dharma_train.data.synthetic.typeset import line_mask, word_width

COLOUR_SCAN_CHANCE = {"printed": 0.1, "handwritten": 0.35, "legal": 0.35, "general": 0.2}
Colour = tuple[int, int, int]


@dataclass(frozen=True)
class RenderedPage:
    image: Image.Image
    answer: PageAnswer  # exactly what the image shows (line numbers of legal pages included)


def render_page(answer: PageAnswer, family: str, width: int, height: int, rng: random.Random,
                degrade: bool = True, min_body_px: int = 0) -> RenderedPage:
    """The page image for `answer` and the answer it shows; PageOverflow rather than drop text that does not fit.

    Grey-scale (mode L) unless the seed makes it a colour scan: most archives scan in grey, and a grey page
    costs a third of the time and disk. `min_body_px` raises the preferred body size (readable pages); 0 keeps
    the style's own.
    """
    style = choose_style(answer, family, width, rng)
    if min_body_px > style.body_px:
        style = replace(style, body_px=min_body_px)
    plan = plan_page(answer, family, width, height, style)
    colour = rng.random() < COLOUR_SCAN_CHANCE[style.family]
    paper, ink, stamp = _paper_colour(rng), _ink_colour(family, rng), _stamp_colour(rng)
    page = Image.new("RGB" if colour else "L", (width, height), _tone(paper, colour))
    _decorate(page, plan, rng, _tone(ink, colour), _tone(stamp, colour), colour)
    for block in plan.blocks:
        block_ink = _tone(stamp if family == "legal" and block.field == "margin" and not block.lines[0].text.isdigit()
                          else ink, colour)
        if block.rotated:
            _draw_rotated(page, block, block_ink, rng)
        else:
            for line in block.lines:
                draw_line(page, line, block_ink, style.hand, rng)
    return RenderedPage(degrade_page(page, rng) if degrade else page, plan.answer)


def draw_line(page: Image.Image, line: Line, colour, hand: Hand | None, rng: random.Random) -> None:
    """One paste per line: words on their baseline, stretched when justified, moved and slanted when handwritten."""
    font = line.font
    words = line.text.split()
    widths = [word_width(font, word) for word in words]
    space = word_width(font, " ")
    gap = space
    if line.justify_to and len(words) > 1:
        gap = max(space, (line.justify_to - sum(widths)) / (len(words) - 1))
    pens, rises, pressures, x = [], None, None, 0.0
    if hand:  # uneven gaps, a baseline that drifts and wobbles, pen pressure word by word
        slope = math.tan(math.radians(rng.uniform(-hand.drift_degrees, hand.drift_degrees)))
        rises, pressures = [], []
        for width in widths:
            pens.append(x)
            rises.append(round(x * slope + rng.gauss(0, hand.wobble * font.size)))
            pressures.append(rng.uniform(0.8, 1.0))
            x += width + space * rng.uniform(0.85, 1.25)
    else:
        for width in widths:
            pens.append(x)
            x += width + gap
    mask, left, top = line_mask(font, words, pens, rises, pressures, slant=hand.slant if hand else 0.0,
                                heavy=bool(hand and hand.heavy and font.size >= 20))
    baseline = line.y + font.getmetrics()[0]
    page.paste(colour, (line.x + left, baseline + top), mask)
    if line.bullet_x is not None:
        bullet, left, top = line_mask(font, [BULLET], [0.0])
        page.paste(colour, (line.bullet_x + left, baseline + top), bullet)


def _draw_rotated(page: Image.Image, block: TextBlock, colour, rng: random.Random) -> None:
    """Draw the lines flat on a mask, then turn it a quarter to the left so the note reads upwards."""
    left, top, right, bottom = block.box
    mask = Image.new("L", (bottom - top, right - left), 0)
    for line in block.lines:
        draw_line(mask, line, 255, None, rng)
    page.paste(colour, (left, top), mask.transpose(Image.Transpose.ROTATE_90))


def _decorate(page: Image.Image, plan: PagePlan, rng: random.Random, ink, stamp, colour: bool) -> None:
    """Furniture without text: rules, ruled paper, coat of arms, stamp frames, form boxes, bar code, signature."""
    draw = ImageDraw.Draw(page)
    style = plan.style
    blocks = {block.field: block for block in plan.blocks}
    body = blocks["text"]
    width, height = page.size
    thin = max(1, round(plan.body_size / 12))
    gap = round(plan.body_size * 0.4)
    if style.family == "handwritten" and rng.random() < 0.5:
        rule = _tone((170, 190, 225), colour)
        ruled_left = body.box[0] - round(width * 0.02)
        for line in body.lines:
            y = line.y + line.font.getmetrics()[0] + round(line.font.size * 0.15)
            draw.line((ruled_left, y, width - round(width * 0.03), y), fill=rule, width=thin)
        if "margin" not in blocks:
            draw.line((ruled_left, 0, ruled_left, height), fill=_tone((225, 120, 130), colour), width=thin)
    if "header" in blocks and style.family in ("printed", "legal", "general") and rng.random() < 0.4:
        y = blocks["header"].box[3] + gap
        draw.line((blocks["header"].box[0], y, blocks["header"].box[2], y), fill=ink, width=thin)
    if "footer" in blocks and style.family == "legal" and rng.random() < 0.5:
        y = blocks["footer"].box[1] - gap
        draw.line((blocks["footer"].box[0], y, blocks["footer"].box[2], y), fill=ink, width=thin)
    if style.emblem and "header" in blocks:
        _emblem(draw, blocks["header"], body.box[1] - gap, ink, thin)
    margin = blocks.get("margin")
    if margin is not None and margin.rotated and rng.random() < 0.6:
        left, top, right, bottom = margin.box
        draw.rectangle((left - 2, top - 4, right + 1, bottom + 4), outline=stamp, width=max(1, thin))
    free_top = body.box[3] + gap
    free_bottom = (blocks["footer"].box[1] if "footer" in blocks else height - round(height * style.pad[1])) - gap
    if style.form:
        _form_boxes(draw, body, ink, thin)
        _barcode(draw, body.box[0], body.box[2], free_top + gap, free_bottom, plan.body_size, rng, ink)
    elif style.family == "legal" and rng.random() < 0.6:
        _signature(draw, (body.box[0] + body.box[2]) // 2, free_top, free_bottom, plan.body_size, rng, ink)


def _emblem(draw: ImageDraw.ImageDraw, header: TextBlock, lowest: int, ink, thin: int) -> None:
    """A round seal with a star, left of the header, never lower than the body's top."""
    size = min(header.box[0] - 4, lowest - header.box[1])
    if size < 8:
        return
    x, y = header.box[0] - size - 2, header.box[1]
    draw.ellipse((x, y, x + size, y + size), outline=ink, width=thin)
    draw.ellipse((x + size * 0.15, y + size * 0.15, x + size * 0.85, y + size * 0.85), outline=ink, width=thin)
    centre, radius = (x + size / 2, y + size / 2), size * 0.3
    star = [(centre[0] + (radius if k % 2 == 0 else radius * 0.45) * math.sin(k * math.pi / 5),
             centre[1] - (radius if k % 2 == 0 else radius * 0.45) * math.cos(k * math.pi / 5)) for k in range(10)]
    draw.polygon(star, fill=ink)


def _form_boxes(draw: ImageDraw.ImageDraw, body: TextBlock, ink, thin: int) -> None:
    """One box per "label: value" paragraph, boxes sharing their edges like a bank slip."""
    pad = max(2, round(body.lines[0].height * 0.15))
    by_paragraph: dict[int, list[Line]] = {}
    for line in body.lines:
        by_paragraph.setdefault(line.paragraph, []).append(line)
    for lines in by_paragraph.values():
        top = lines[0].y - pad // 2
        bottom = lines[-1].y + lines[-1].height - pad // 2
        draw.rectangle((body.box[0] - pad, top, body.box[2], bottom), outline=ink, width=thin)


def _barcode(draw: ImageDraw.ImageDraw, left: int, right: int, top: int, bottom: int, body_size: int,
             rng: random.Random, ink) -> None:
    """Interleaved bars under a boleto, when there is room."""
    bar_height = body_size * 3
    if bottom - top < bar_height:
        return
    unit = max(1, round(body_size / 8))
    x = left
    end = left + round((right - left) * 0.85)
    while x < end:
        bar = unit * rng.choice((1, 1, 2, 3))
        draw.rectangle((x, top, x + bar - 1, top + bar_height), fill=ink)
        x += bar + unit * rng.choice((1, 1, 2, 3))


def _signature(draw: ImageDraw.ImageDraw, centre_x: int, top: int, bottom: int, body_size: int,
               rng: random.Random, ink) -> None:
    """A scribbled signature over a signing line, when the page has room below the body."""
    needed = body_size * 4
    if bottom - top < needed:
        return
    line_y = top + needed - body_size
    half = body_size * 6
    draw.line((centre_x - half, line_y, centre_x + half, line_y), fill=ink, width=max(1, body_size // 12))
    points, x = [], centre_x - half * 0.8
    while x < centre_x + half * 0.8:
        points.append((x, line_y - body_size * rng.uniform(0.3, 2.4)))
        x += body_size * rng.uniform(0.3, 0.9)
    if len(points) > 1:
        draw.line(points, fill=ink, width=max(1, body_size // 8), joint="curve")


def _tone(colour: Colour, keep_colour: bool):
    """The colour itself on a colour scan, its luminance on a grey one."""
    if keep_colour:
        return colour
    red, green, blue = colour
    return round(0.299 * red + 0.587 * green + 0.114 * blue)


def _paper_colour(rng: random.Random) -> Colour:
    """Off-white, sometimes yellowed, so the model does not learn one exact background."""
    white = rng.randint(232, 255)
    return (white, white - rng.randint(0, 5), white - rng.randint(0, 18))


def _ink_colour(family: str, rng: random.Random) -> Colour:
    if family == "handwritten":
        grey = rng.randint(40, 100)
        return (grey, grey, grey + rng.randint(0, 90))  # pencil grey to blue ballpoint
    dark = rng.randint(5, 45)
    return (dark, dark, dark)


def _stamp_colour(rng: random.Random) -> Colour:
    return rng.choice(((40, 60, 150), (150, 40, 45), (30, 30, 30), (90, 40, 120)))
