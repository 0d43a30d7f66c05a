"""Page images as datasets hold them (bytes, base64, file paths): checked, fixed or refused, stored once.

A row's image is checked in full (PNG chunk checksums, or a complete decode for other formats), so a truncated
file is caught here and not halfway through training. Images the model cannot take as they are get fixed and
counted: modes other than RGB or grayscale are converted, and pages over the pixel budget are scaled down. Fixed images and images that arrived as bytes are written to a
content-addressed folder (`<sha256 of the source bytes>...`), atomically and only once; untouched image files are
used where they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dharma_train.data.config import DEFAULT_MAX_PIXELS
from dharma_train.data.validation import RowProblem
from dharma_train.files import write_bytes_atomically

MAX_ASPECT_RATIO = 200  # Qwen2.5-VL's smart_resize refuses longer strips
SUPPORTED_MODES = ("RGB", "L")
MAX_PATH_LENGTH = 4096  # Linux's PATH_MAX; a longer 'image' string is data, not a path
DEEP_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # 16- and 32-bit grayscale, scaled to 8 bits
GRAY_MODES = (*DEEP_GRAY_MODES, "1")
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}


@dataclass(frozen=True)
class PreparedImage:
    """Where the usable image is, the hash of the bytes it came from, and the fixes applied (reason, detail)."""

    path: Path
    sha256: str
    fixes: list[tuple[str, str]] = field(default_factory=list)


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
            raise RowProblem("missing_file", f"image {path} does not exist")
        return path.read_bytes(), path
    if value is None:
        raise RowProblem("missing_field", "no image: both 'image' and 'image_base64' are absent or null")
    raise RowProblem("non_string_value", f"'image' must be bytes or a path, got {type(value).__name__}")


def prepare_image(data: bytes, source: Path | None, store: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedImage:
    """Check one image and fix it if needed; raises RowProblem for images no fix can save.

    The fixes are planned from the header (mode, size), so a fixed image already in the store is not made again.
    """
    digest = hashlib.sha256(data).hexdigest()
    image = _open_checked(data)
    width, height = image.size
    if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise RowProblem("unusable_size", f"{width}x{height} (Qwen2.5-VL needs an aspect ratio under "
                                            f"{MAX_ASPECT_RATIO}:1)")
    fixes = []
    if image.mode not in SUPPORTED_MODES:
        fixes.append(("converted_mode", f"{image.mode} -> {supported_mode(image.mode)}"))
    if width * height > max_pixels:
        fitted = budget_size(width, height, max_pixels)
        fixes.append(("resized", f"{width}x{height} -> {fitted[0]}x{fitted[1]} (max_pixels {max_pixels})"))
    if not fixes and source is not None:
        return PreparedImage(source, digest)
    if not fixes:
        path = store / f"{digest}{EXTENSIONS.get(image.format or '', '.png')}"
        if not path.exists():
            write_bytes_atomically(path, data)
        return PreparedImage(path, digest)
    jpeg = image.format == "JPEG"  # a scanned photo stays a JPEG; anything else becomes a lossless PNG
    path = store / f"{digest}-fixed-{max_pixels}{'.jpg' if jpeg else '.png'}"
    if not path.exists():
        with _damage_named(data):  # a fix decodes the pixels of a PNG for the first time
            if image.mode not in SUPPORTED_MODES:
                image = to_supported_mode(image)
            if width * height > max_pixels:
                image = image.resize(budget_size(width, height, max_pixels), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95) if jpeg else image.save(buffer, "PNG", compress_level=1)
        write_bytes_atomically(path, buffer.getvalue())
    return PreparedImage(path, digest, fixes)


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
