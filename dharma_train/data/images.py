"""Page images as datasets hold them (bytes, base64, file paths): checked, fixed or refused, stored once.

A row's image is checked in full (PNG chunk checksums, or a complete decode for other formats), so a truncated
file is caught here and not halfway through training. Images the model cannot take as they are get fixed and
counted: a camera's EXIF orientation is applied, modes other than RGB or grayscale are converted, and pages over
the pixel budget are scaled down. A multi-page file (a PDF, a multi-frame TIFF) gives the page a row names
(`page`, from 1), and one answer for all its pages is refused (`multi_page`). Fixed images, single pages and images
that arrived as bytes are written to a content-addressed folder (`<sha256 of the source bytes>...`), atomically and
only once; untouched image files are used where they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dharma_train.data import pdf
from dharma_train.data.config import DEFAULT_MAX_PIXELS, DEFAULT_PDF_DPI
from dharma_train.data.validation import RowProblem, check_page_number
from dharma_train.files import not_a_file, write_bytes_atomically

log = logging.getLogger(__name__)

MAX_ASPECT_RATIO = 200  # Qwen2.5-VL's smart_resize refuses longer strips
SUPPORTED_MODES = ("RGB", "L")
MAX_PATH_LENGTH = 4096  # Linux's PATH_MAX; a longer 'image' string is data, not a path
DEEP_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # 16- and 32-bit grayscale, scaled to 8 bits
GRAY_MODES = (*DEEP_GRAY_MODES, "1")
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp",
              "GIF": ".gif"}
JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a phone's JPEG with a second picture (depth map, preview) after the photo
MULTI_PAGE_FORMATS = ("TIFF", "GIF", "WEBP", "PNG")  # formats whose frames are pages (an MPO's are not)
ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 as stored, 2-8 mirrored and/or rotated
ORIENTATIONS = {2: "mirrored", 3: "rotated 180°", 4: "flipped upside down", 5: "mirrored and rotated 90° "
                "counter-clockwise", 6: "rotated 90° clockwise", 7: "mirrored and rotated 90° clockwise",
                8: "rotated 90° counter-clockwise"}


@dataclass(frozen=True)
class PreparedImage:
    """Where the usable image is, the hash of the bytes it came from, and the fixes applied (reason, detail)."""

    path: Path
    sha256: str  # of the source bytes; for one page of a multi-page file, of those bytes and the page number
    fixes: list[tuple[str, str]] = field(default_factory=list)
    page: int | None = None  # the page of a multi-page source (a PDF, a multi-frame TIFF) this image is


def image_bytes(value, base64_value, base: Path | None) -> tuple[bytes, Path | None]:
    """The raw bytes of a row's image, and its file when it is one. `value`: bytes, {"bytes", "path"} or a path."""
    if isinstance(value, dict):  # the `datasets` Image feature read with decode=False
        value = value.get("bytes") or value.get("path")
    if value is None and base64_value is not None:
        return _decode_base64(base64_value), None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), None
    if isinstance(value, str) and value:
        if len(value) > MAX_PATH_LENGTH:
            raise RowProblem("missing_file", f"'image' holds a {len(value)}-character string, not a file path "
                                             f"(base64 belongs in 'image_base64')")
        path = Path(value)
        path = path if path.is_absolute() or base is None else base / path
        if not path.is_file():
            raise RowProblem("missing_file", f"image {not_a_file(path)}")
        return path.read_bytes(), path
    if value is None:
        raise RowProblem("missing_field", "no image: both 'image' and 'image_base64' are absent or null")
    raise RowProblem("non_string_value", f"'image' must be bytes or a path, got {type(value).__name__}")


def page_number(value, column: str = "page") -> int | None:
    """A row's `page` column: a page of a multi-page file, counted from 1; None for a whole file."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RowProblem("invalid_value", f"'{column}' must be a page number from 1, got {value!r}")
    return value


def page_count(data: bytes) -> int:
    """How many pages a file holds (a PDF's pages, a TIFF's frames; 1 for an ordinary image)."""
    if pdf.is_pdf(data):
        return pdf.page_count(data)
    with _damage_named(data):
        image = Image.open(io.BytesIO(data))
        return _frames(image)


def prepare_image(data: bytes, source: Path | None, store: Path, max_pixels: int = DEFAULT_MAX_PIXELS,
                  page: int | None = None, pdf_dpi: int = DEFAULT_PDF_DPI) -> PreparedImage:
    """Check one image (or one page of a PDF or multi-frame file) and fix it if needed; raises RowProblem for
    images no fix can save.

    The fixes are planned from the header (mode, size, orientation), so a fixed image already in the store is not
    made again.
    """
    digest = hashlib.sha256(data).hexdigest()
    if pdf.is_pdf(data):
        return _prepare_pdf_page(data, digest, store, max_pixels, page, pdf_dpi)
    image = _open_checked(data)
    pages = _frames(image)
    if pages > 1 or page not in (None, 1):
        image, digest = _page_of(image, data, digest, page, pages)
    orientation = _orientation(image)
    width, height = image.size
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise RowProblem("unusable_size", f"{width}x{height} (Qwen2.5-VL needs an aspect ratio under "
                                            f"{MAX_ASPECT_RATIO}:1)")
    fixes = []
    if orientation in ORIENTATIONS:
        fixes.append(("rotated_exif", f"EXIF orientation {orientation} ({ORIENTATIONS[orientation]}) applied: "
                                      f"stored {image.width}x{image.height}, upright {width}x{height}"))
    if image.mode not in SUPPORTED_MODES:
        fixes.append(("converted_mode", f"{image.mode} -> {supported_mode(image.mode)}"))
    if width * height > max_pixels:
        fitted = budget_size(width, height, max_pixels)
        fixes.append(("resized", f"{width}x{height} -> {fitted[0]}x{fitted[1]} (max_pixels {max_pixels})"))
    one_page = pages > 1  # one page of several: stored on its own, whatever its fixes
    if not fixes and not one_page and source is not None:
        return PreparedImage(source, digest)
    if not fixes and not one_page:
        path = store / f"{digest}{EXTENSIONS.get(image.format or '', '.png')}"
        if not _stored_intact(path, digest):
            write_bytes_atomically(path, data)
        return PreparedImage(path, digest)
    jpeg = image.format in JPEG_FORMATS  # a scanned photo stays a JPEG; anything else becomes a lossless PNG
    name = f"{digest}-fixed-{max_pixels}" if fixes else f"{digest}-page"
    path = store / f"{name}{'.jpg' if jpeg else '.png'}"
    if not _stored_intact(path):
        with _damage_named(data):  # a fix decodes the pixels of a PNG for the first time
            if orientation in ORIENTATIONS:
                image = ImageOps.exif_transpose(image)
            if image.mode not in SUPPORTED_MODES:
                image = to_supported_mode(image)
            if width * height > max_pixels:
                image = image.resize(budget_size(width, height, max_pixels), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95) if jpeg else image.save(buffer, "PNG", compress_level=1)
        write_bytes_atomically(path, buffer.getvalue())
    return PreparedImage(path, digest, fixes, page if one_page else None)


def multi_page_problem(what: str, pages: int) -> RowProblem:
    """One answer given for a file of several pages: say how to give one answer per page."""
    return RowProblem("multi_page", f"{what} has {pages} pages and the row one answer for all of them; give one "
                                    f"answer per page: in a sidecar folder NAME.1.txt ... NAME.{pages}.txt (or .json) "
                                    f"beside the file, in JSONL or parquet one row per page with a 'page' column "
                                    f"(1 to {pages})")


def _prepare_pdf_page(data: bytes, digest: str, store: Path, max_pixels: int, page: int | None,
                      dpi: int) -> PreparedImage:
    """One PDF page rendered at `dpi` within `max_pixels` (a lower resolution is counted as resized)."""
    plan = pdf.plan_page(data, page or 1, dpi, max_pixels)
    if page is None and plan.pages > 1:
        raise multi_page_problem("the PDF", plan.pages)
    if max(plan.width, plan.height) / min(plan.width, plan.height) > MAX_ASPECT_RATIO:
        raise RowProblem("unusable_size", f"page {plan.page} renders {plan.width}x{plan.height} (Qwen2.5-VL needs "
                                          f"an aspect ratio under {MAX_ASPECT_RATIO}:1)")
    fixes = []
    if plan.dpi < dpi:
        fixes.append(("resized", f"page {plan.page} rendered at {plan.dpi:.0f} dpi, not {dpi}, to stay within "
                                 f"max_pixels {max_pixels}: {plan.width}x{plan.height}"))
    digest = _page_digest(digest, plan.page)
    path = store / f"{digest}-pdf-{dpi}dpi-{max_pixels}.png"
    if not _stored_intact(path):
        buffer = io.BytesIO()
        pdf.render_page(data, plan).save(buffer, "PNG", compress_level=1)
        write_bytes_atomically(path, buffer.getvalue())
    return PreparedImage(path, digest, fixes, plan.page)


def _stored_intact(path: Path, digest: str | None = None) -> bool:
    """A stored image from an earlier load is trusted only if it is whole: its bytes hash to its name (a copy), or
    (a fixed or rendered one, which the library wrote as PNG or JPEG) its PNG chunk checksums hold or its JPEG ends
    with the end-of-image marker, checks that read no pixels; a damaged one is made again from the source, with one
    warning naming it."""
    if not path.is_file():
        return False
    try:
        if digest is not None:
            intact = hashlib.sha256(path.read_bytes()).hexdigest() == digest
        elif path.suffix == ".jpg":
            data = path.read_bytes()
            intact = data.startswith(b"\xff\xd8") and data.rstrip(b"\x00").endswith(b"\xff\xd9")
        else:
            with Image.open(path) as stored:
                stored.verify()  # PNG: every chunk's CRC, the IDAT stream without decoding it
            intact = True
    except Exception:  # PIL raises OSError, SyntaxError, EOFError or struct.error for a cut or corrupt file
        intact = False
    if not intact:
        log.warning("stored image %s is damaged: made again from its source", path)
    return intact


def _frames(image: Image.Image) -> int:
    """Pages in a multi-page format; an MPO's second frame is a depth map or preview, not a page."""
    return getattr(image, "n_frames", 1) if image.format in MULTI_PAGE_FORMATS else 1


def _page_of(image: Image.Image, data: bytes, digest: str, page: int | None,
             pages: int) -> tuple[Image.Image, str]:
    """The frame a row names, decoded in full (a damaged later frame is found here), and its own hash."""
    if page is None:
        raise multi_page_problem(f"the {image.format} image", pages)
    check_page_number(page, pages)
    source_format = image.format
    with _damage_named(data):
        image.seek(page - 1)
        image.load()
    image.format = source_format
    return image, _page_digest(digest, page)


def _page_digest(digest: str, page: int) -> str:
    """One page's identity: the file's bytes and the page number (the same page is a duplicate, or a leak)."""
    return hashlib.sha256(f"{digest}/page/{page}".encode()).hexdigest()


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation; a PNG's is read only from an eXIf chunk before the pixels, so checking stays cheap."""
    if image.format == "PNG":
        if "exif" not in image.info:
            return 1
        exif = Image.Exif()
        exif.load(image.info["exif"])
        return exif.get(ORIENTATION_TAG, 1)
    return image.getexif().get(ORIENTATION_TAG, 1)


def supported_mode(mode: str) -> str:
    """What to_supported_mode turns `mode` into: grayscale for gray sources, RGB for the rest."""
    return "L" if mode in GRAY_MODES else "RGB"


def to_supported_mode(image: Image.Image) -> Image.Image:
    """RGB or grayscale, as a scanner would give it: transparency over white paper, 16-bit depth scaled to 8."""
    source_format = image.format
    if image.mode in DEEP_GRAY_MODES:
        pixels = np.asarray(image, dtype=np.float64)
        top = pixels.max(initial=0)
        if top > 255:  # 16-bit data (PIL opens 16-bit PNGs as I or I;16); wider ranges are stretched
            pixels = pixels / 257 if top <= 65535 else (pixels - pixels.min()) * (255 / (top - pixels.min()))
        converted = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="L")
    elif image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        converted = Image.alpha_composite(paper, rgba).convert("RGB")
    elif image.mode in GRAY_MODES:
        converted = image.convert("L")
    else:  # CMYK, P, YCbCr, LAB, HSV
        converted = image.convert("RGB")
    converted.format = source_format
    return converted


def budget_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most `max_pixels` pixels."""
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    while size[0] * size[1] > max_pixels:  # only when the short side was raised to 1 pixel: trim the long one
        size = (size[0] - 1, size[1]) if size[0] >= size[1] else (size[0], size[1] - 1)
    return size


def _open_checked(data: bytes) -> Image.Image:
    """A PNG is checked against the checksum of every chunk (15x faster than decoding it, and it catches truncated
    and damaged files alike); any other format is decoded in full, the only way to find a truncated JPEG."""
    if not data:
        raise RowProblem("corrupt_image", "the image is 0 bytes")
    with _damage_named(data):
        image = Image.open(io.BytesIO(data))
        if image.format == "PNG":
            image.verify()
            return Image.open(io.BytesIO(data))  # verify() leaves the image unusable; reopened, decoded on demand
        source_format = image.format
        image.load()
        image.format = source_format
        return image


@contextmanager
def _damage_named(data: bytes):
    """PIL's many exceptions for bad image data, as the LoadReport's reasons."""
    try:
        yield
    except Image.DecompressionBombError as error:
        raise RowProblem("decompression_bomb", str(error)) from None
    except UnidentifiedImageError:
        raise RowProblem("corrupt_image", f"not a readable image ({len(data)} bytes)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        reason = "truncated_image" if "truncated" in str(error).lower() else "corrupt_image"
        raise RowProblem(reason, f"{type(error).__name__}: {error}") from None


def _decode_base64(value) -> bytes:
    if not isinstance(value, str):
        raise RowProblem("non_string_value", f"'image_base64' must be a string, got {type(value).__name__}")
    if value.startswith("data:") and "," in value[:100]:  # a data URI: data:image/png;base64,...
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value)
    except (binascii.Error, ValueError) as error:
        raise RowProblem("corrupt_image", f"'image_base64' is not base64 ({error})") from None
