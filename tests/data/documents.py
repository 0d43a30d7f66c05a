"""Real document files for the tests, made here: PDFs with a text layer (PDFium writes them), scanned-looking
pages, an encrypted PDF (pypdf, a dev dependency), a phone photo with an EXIF orientation, a 2-frame TIFF."""

from __future__ import annotations

import ctypes
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

A4 = (595, 842)  # points


@dataclass(frozen=True)
class Text:
    """A line of text drawn at (x, y) points from the bottom-left corner, in Helvetica."""

    text: str
    x: float
    y: float
    size: float = 12
    invisible: bool = False  # PDF text render mode 3: in the text layer, not on the page (OCR layers over scans)
    turned: bool = False  # drawn running upwards (turned 90° counter-clockwise), as on a page shown with /Rotate 90


@dataclass(frozen=True)
class Picture:
    """A photo-like image covering (x, y, width, height) points: what a scanned page is made of."""

    x: float
    y: float
    width: float
    height: float


def make_pdf(pages: list[list[Text | Picture]], size: tuple[float, float] = A4) -> bytes:
    """A PDF of the given pages, each drawn from its items, as born-digital (text) or scanned (picture) pages."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    document = pdfium.PdfDocument.new()
    for items in pages:
        page = document.new_page(*size)
        for item in items:
            if isinstance(item, Text):
                obj = pdfium_c.FPDFPageObj_NewTextObj(document.raw, b"Helvetica", ctypes.c_float(item.size))
                wide = ctypes.create_string_buffer((item.text + "\x00").encode("utf-16-le"))
                pdfium_c.FPDFText_SetText(obj, ctypes.cast(wide, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
                if item.invisible:
                    pdfium_c.FPDFTextObj_SetTextRenderMode(obj, pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE)
                a, b, c, d = (0, 1, -1, 0) if item.turned else (1, 0, 0, 1)
                pdfium_c.FPDFPageObj_Transform(obj, a, b, c, d, item.x, item.y)
                pdfium_c.FPDFPage_InsertObject(page.raw, obj)
            else:
                picture = pdfium.PdfImage.new(document)
                pixels = np.random.default_rng(0).integers(0, 255, (60, 40, 3), dtype=np.uint8)
                bitmap = pdfium.PdfBitmap.from_pil(Image.fromarray(pixels))
                picture.set_bitmap(bitmap)
                picture.set_matrix(pdfium.PdfMatrix().scale(item.width, item.height).translate(item.x, item.y))
                page.insert_obj(picture)
        page.gen_content()
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def encrypt_pdf(data: bytes, password: str = "segredo") -> bytes:
    """The same PDF, openable only with `password` (RC4-128: pure Python in pypdf, no cryptography package)."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt(password, algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def page_image(seed: int, size=(120, 160)) -> Image.Image:
    """A distinct page per seed (random pixels)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def sideways_photo(seed: int = 0) -> tuple[bytes, Image.Image]:
    """A phone photo: the pixels stored sideways (landscape) with EXIF Orientation 6 ("rotate 90° clockwise to
    show"), as phones write them; and the upright page it shows."""
    upright = Image.new("RGB", (90, 120), "white")
    upright.paste((seed % 64, 0, 0), (0, 0, 30, 30))  # a dark mark in the top-left corner shows which way is up
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: undone by orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(stored, "JPEG", quality=95, exif=exif.tobytes()), upright


def two_frame_tiff(seed: int = 0) -> bytes:
    """A 2-page scan as fax machines and scanners write it: one TIFF, one frame per page."""
    first, second = page_image(seed), page_image(seed + 1)
    return encoded(first, "TIFF", save_all=True, append_images=[second])
