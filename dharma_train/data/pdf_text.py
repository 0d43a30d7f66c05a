"""A born-digital PDF page's text layer as a silver answer: header, footer and margin by position bands, the rest text.

The text layer is what the PDF's producer wrote, not what a person checked: a reference made from it is marked
`answer_source: pdf_text_layer` and counted as unverified wherever it is loaded. Lines are assigned whole: a line
lying entirely in the top band is header, in the bottom band footer, in the left or right band margin, anything
else text. A page whose layer is empty, holds only images (a scan), or has text that is not drawn (render mode
"invisible", as OCR layers over scans are, or text outside the page) gives no answer, with the reason.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from dharma_train.data.pdf import open_pdf
from dharma_train.data.schema import PageAnswer
from dharma_train.data.validation import RowProblem

TEXT_LAYER_SOURCE = "pdf_text_layer"  # the answer_source of every answer made here
LINE_HYPHEN = "\ufffe"  # PDFium's mark for a hyphen it removed at a line end, joining the word's two halves


@dataclass(frozen=True)
class Bands:
    """Where the page furniture is, as shares of the page shown upright: top and bottom of its height, left and right
    of its width."""

    header: float = 0.08
    footer: float = 0.08
    margin: float = 0.08

    def __post_init__(self):
        for name in ("header", "footer", "margin"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"the {name} band must be a share of the page in [0, 0.5), got {getattr(self, name)}")


@dataclass(frozen=True)
class Line:
    """One line of the text layer and where it lies on the upright page (shares of width and height, from the top
    left)."""

    text: str
    left: float
    top: float
    right: float
    bottom: float


def page_answer(data: bytes, page: int, bands: Bands) -> PageAnswer:
    """The answer a page's text layer gives; RowProblem when the layer cannot be trusted to match the page."""
    import pypdfium2.raw as pdfium_c

    with open_pdf(data) as document:
        loaded = document[page - 1]
        try:
            lines, hidden, outside = _lines(loaded)
            pictures = sum(1 for _ in loaded.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))
        finally:
            loaded.close()
    if hidden or outside:
        where = ", ".join(part for part in (f"{hidden} drawn invisible (an OCR layer or hidden text)" if hidden else "",
                                            f"{outside} outside the page" if outside else "") if part)
        raise RowProblem("invisible_text", f"page {page}: the text layer has characters a reader cannot see "
                                           f"({where}), so it does not match the page")
    if not lines:
        if pictures:
            raise RowProblem("image_only", f"page {page}: no text layer, {pictures} image(s): a scan, whose text "
                                           f"only a person or an OCR model can give")
        raise RowProblem("empty_text_layer", f"page {page}: no text and no image (a blank page)")
    return assign(lines, bands)


def assign(lines: list[Line], bands: Bands) -> PageAnswer:
    """Each line, whole, to the band it lies in; lines keep the text layer's order within a field."""
    fields: dict[str, list[str]] = {"header": [], "margin": [], "footer": [], "text": []}
    for line in lines:
        if line.bottom <= bands.header:
            fields["header"].append(line.text)
        elif line.top >= 1 - bands.footer:
            fields["footer"].append(line.text)
        elif line.right <= bands.margin or line.left >= 1 - bands.margin:
            fields["margin"].append(line.text)
        else:
            fields["text"].append(line.text)
    return PageAnswer(**{name: "\n".join(texts) for name, texts in fields.items()})


def _lines(page) -> tuple[list[Line], int, int]:
    """The page's lines in text-layer order, and how many characters are invisible or off the page."""
    import pypdfium2.raw as pdfium_c

    text_page = page.get_textpage()
    try:
        count = text_page.count_chars()
        text = text_page.get_text_range(0, count) if count else ""
        left, bottom, right, top = page.get_cropbox()
        to_upright = _upright(left, bottom, right - left, top - bottom, page.get_rotation())
        lines, current, hidden, outside = [], [], 0, 0
        for index, char in enumerate(text):
            if char in "\r\n" or char == LINE_HYPHEN:
                if char == LINE_HYPHEN:
                    current.append(("-", None))
                lines.append(current)
                current = []
                continue
            box = None
            if not char.isspace() and not pdfium_c.FPDFText_IsGenerated(text_page.raw, index):
                obj = pdfium_c.FPDFText_GetTextObject(text_page.raw, index)
                if obj and pdfium_c.FPDFTextObj_GetTextRenderMode(obj) == pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE:
                    hidden += 1
                box = to_upright(text_page.get_charbox(index))
                if not (0 <= (box[0] + box[2]) / 2 <= 1 and 0 <= (box[1] + box[3]) / 2 <= 1):
                    outside += 1  # its middle off the page: cropped away, or never on it
            current.append((char, box))
        lines.append(current)
    finally:
        text_page.close()
    return [line for line in map(_line, lines) if line is not None], hidden, outside


def _line(chars: list[tuple[str, tuple | None]]) -> Line | None:
    text = unicodedata.normalize("NFC", "".join(char for char, _ in chars)).strip()
    boxes = [box for _, box in chars if box is not None]
    if not text or not boxes:
        return None
    return Line(text, min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                max(b[3] for b in boxes))


def _upright(left: float, bottom: float, width: float, height: float, rotation: int):
    """A function from a character box in PDF points to (left, top, right, bottom) shares of the page as a viewer
    shows it (the page's /Rotate, clockwise, applied)."""
    def corner(x: float, y: float) -> tuple[float, float]:
        across, up = (x - left) / width, (y - bottom) / height
        return {0: (across, 1 - up), 90: (up, across), 180: (1 - across, up), 270: (1 - up, 1 - across)}[rotation % 360]

    def box(charbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = charbox
        corners = [corner(x, y) for x in (x0, x1) for y in (y0, y1)]
        return (min(c[0] for c in corners), min(c[1] for c in corners), max(c[0] for c in corners),
                max(c[1] for c in corners))

    return box

