"""A contact sheet: a grid of pages, each beside its ground truth, for a person to check what a set teaches."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from dharma_train.data.pages import Page, load_pages
from dharma_train.data.schema import FIELDS
from dharma_train.data.synthetic.fonts import faces

THUMB_HEIGHT = 440
PANEL_WIDTH = 470
PAD = 14
TEXT_PX = 13
FIELD_COLOURS = {"header": (30, 90, 170), "margin": (170, 60, 40), "text": (20, 20, 20), "footer": (40, 130, 60)}


def write_contact_sheet(folder: str | Path, out: str | Path, count: int = 8, columns: int = 2) -> Path:
    """Draw up to `count` pages of `folder`, taking the families in turn, into the PNG `out`."""
    if count < 1 or columns < 1:
        raise ValueError(f"count and columns must be at least 1, got {count} and {columns}")
    pages = _spread(load_pages(folder).pages, count)
    cells = [_cell(page) for page in pages]
    cell_width, cell_height = max(c.width for c in cells), max(c.height for c in cells)
    rows = -(-len(cells) // columns)
    sheet = Image.new("RGB", (columns * cell_width, rows * cell_height), "white")
    for index, cell in enumerate(cells):
        sheet.paste(cell, ((index % columns) * cell_width, (index // columns) * cell_height))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # 64 colours are plenty for eyes and keep a sheet of scanned-looking pages a few hundred KB instead of MBs
    sheet.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, format="PNG",
                                                                                             optimize=True)
    return out


def _spread(pages: list[Page], count: int) -> list[Page]:
    """The first pages of each family in turn, so a sheet of a mixed set shows every family."""
    by_family: dict[str, list[Page]] = {}
    for page in pages:
        by_family.setdefault(page.family, []).append(page)
    chosen: list[Page] = []
    while len(chosen) < min(count, len(pages)):
        for family_pages in by_family.values():
            taken = sum(1 for page in chosen if page.family == family_pages[0].family)
            if taken < len(family_pages) and len(chosen) < count:
                chosen.append(family_pages[taken])
    return chosen


def _cell(page: Page) -> Image.Image:
    """The page scaled to THUMB_HEIGHT, and on its right the id, family, task and every non-empty field."""
    with Image.open(page.image) as image:
        thumb = image.convert("RGB")
    thumb.thumbnail((THUMB_HEIGHT, THUMB_HEIGHT), Image.Resampling.LANCZOS)
    cell = Image.new("RGB", (thumb.width + PANEL_WIDTH + 3 * PAD, THUMB_HEIGHT + 2 * PAD), "white")
    cell.paste(thumb, (PAD, PAD))
    draw = ImageDraw.Draw(cell)
    draw.rectangle((PAD - 1, PAD - 1, PAD + thumb.width, PAD + thumb.height), outline=(180, 180, 180))
    font = faces("mono")[-1].font(TEXT_PX)
    line_height = round(TEXT_PX * 1.35)
    x, y, bottom = thumb.width + 2 * PAD, PAD, THUMB_HEIGHT + PAD
    draw.text((x, y), f"{page.id} · {page.family} · {page.task}", font=font, fill=(120, 120, 120))
    y += round(line_height * 1.5)
    lines = [(field, line) for field in FIELDS if getattr(page.answer, field)
             for line in [*_wrapped(f"{field}: {getattr(page.answer, field)}", font, PANEL_WIDTH), ""]]
    for index, (field, line) in enumerate(lines):
        if y + 2 * line_height > bottom and any(text for _, text in lines[index + 1:]):
            draw.text((x, y), "…", font=font, fill=(120, 120, 120))  # the rest of the answer does not fit
            break
        draw.text((x, y), line, font=font, fill=FIELD_COLOURS[field])
        y += line_height if line else line_height // 2
    return cell


def _wrapped(text: str, font, width: int) -> list[str]:
    """Wrap at spaces, keeping the text's own line breaks; over-long words are cut by characters."""
    lines = []
    for part in text.split("\n"):
        line = ""
        for word in part.split(" "):
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while font.getlength(word) > width:
                cut = max(1, int(len(word) * width / font.getlength(word)) - 1)
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines
