"""PDF pages as page images, rendered with PDFium (pypdfium2: a wheel, no system library) within the pixel budget.

A PDF is a document of pages: each page is rendered at `data.pdf_dpi`, or at the highest resolution that stays
within `data.max_pixels` (then counted as `resized`). A PDF that needs a password is `encrypted_pdf`, one PDFium
cannot open or render is `corrupt_pdf`. "PDFium is inherently not thread-safe" (pypdfium2's documentation): not
even two documents may be used on two threads at once, and the loader checks rows on several, so every call here
holds one lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from dharma_train.data.validation import RowProblem, check_page_number

PDF_MAGIC = b"%PDF-"
POINTS_PER_INCH = 72
PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True)
class PdfPagePlan:
    """How one page will be rendered, decided from the page size alone (no pixels drawn)."""

    page: int  # 1-based
    pages: int  # in the document
    width: int  # pixels
    height: int
    scale: float  # pixels per point
    dpi: float  # the resolution actually used


def is_pdf(data: bytes) -> bool:
    """The PDF header, which the format allows anywhere in the first 1024 bytes."""
    return PDF_MAGIC in data[:1024]


@contextmanager
def open_pdf(data: bytes) -> Iterator:
    """The document, opened and closed under the PDFium lock; RowProblem for a password or damage."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as error:
            code = getattr(error, "err_code", None)
            if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
                raise RowProblem("encrypted_pdf", "the PDF needs a password to open; decrypt it first, e.g. "
                                                  "`qpdf --decrypt --password=PASSWORD in.pdf out.pdf`") from None
            raise RowProblem("corrupt_pdf", f"not a readable PDF ({error}; {len(data)} bytes)") from None
        try:
            if len(document) == 0:
                raise RowProblem("corrupt_pdf", "the PDF has no pages")
            yield document
        finally:
            document.close()


def page_count(data: bytes) -> int:
    with open_pdf(data) as document:
        return len(document)


def plan_page(data: bytes, page: int, dpi: int, max_pixels: int) -> PdfPagePlan:
    """The pixel size of `page` at `dpi`, or at the largest scale within `max_pixels`."""
    with open_pdf(data) as document:
        pages = len(document)
        check_page_number(page, pages)
        width_points, height_points = _page_size(document, page)
    scale = dpi / POINTS_PER_INCH
    if _pixels(width_points, scale) * _pixels(height_points, scale) > max_pixels:
        scale = math.sqrt(max_pixels / (width_points * height_points))
        while _pixels(width_points, scale) * _pixels(height_points, scale) > max_pixels:
            scale *= 0.999  # rounding up to whole pixels can still overshoot by a row
    return PdfPagePlan(page, pages, _pixels(width_points, scale), _pixels(height_points, scale), scale,
                       scale * POINTS_PER_INCH)


def render_page(data: bytes, plan: PdfPagePlan) -> Image.Image:
    """The page as an RGB image on white paper, at the planned scale (forms drawn, as a viewer shows them)."""
    import pypdfium2 as pdfium

    with open_pdf(data) as document:
        page = document[plan.page - 1]
        try:
            bitmap = page.render(scale=plan.scale, rev_byteorder=True)
            image = bitmap.to_pil().convert("RGB")  # a copy: the bitmap's memory goes back to PDFium, under the lock
            bitmap.close()
        except pdfium.PdfiumError as error:
            raise RowProblem("corrupt_pdf", f"page {plan.page} cannot be rendered ({error})") from None
        finally:
            page.close()
    return image


def _page_size(document, page: int) -> tuple[float, float]:
    """Width and height in points as the page is shown (its /Rotate applied)."""
    import pypdfium2 as pdfium

    try:
        loaded = document[page - 1]
    except pdfium.PdfiumError as error:
        raise RowProblem("corrupt_pdf", f"page {page} cannot be read ({error})") from None
    try:
        width, height = loaded.get_size()
    finally:
        loaded.close()
    if min(width, height) <= 0:
        raise RowProblem("unusable_size", f"page {page} is {width} x {height} points")
    return width, height


def _pixels(points: float, scale: float) -> int:
    return max(1, math.ceil(points * scale))  # PDFium's own rounding of a page to a bitmap
