"""A fast PNG writer for generated pages: no row filters and zlib's run-length strategy.

Pillow tries every PNG row filter on every row; on scanned-looking pages (per-pixel noise) that costs 4 to 5
times more than the compression itself, and on grey pages the filters gain nothing (docs/data.md has the
figures). This writer emits a standard 8-bit grey or RGB PNG that any reader opens, in a fifth (grey) to a third
(colour) of Pillow's time.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {"L": 0, "RGB": 2}  # PNG colour type per Pillow mode


def write_png(image: Image.Image, path: str | Path) -> None:
    """Write an L or RGB image as PNG: each row behind filter byte 0, then zlib level 1 with Z_RLE."""
    if image.mode not in COLOUR_TYPES:
        raise ValueError(f"write_png takes L or RGB images, got mode {image.mode}")
    pixels = np.asarray(image)
    height = pixels.shape[0]
    rows = np.empty((height, 1 + pixels[0].size), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None on every row
    rows[:, 1:] = pixels.reshape(height, -1)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = compressor.compress(rows.tobytes()) + compressor.flush()
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, COLOUR_TYPES[image.mode], 0, 0, 0)
    with open(path, "wb") as handle:
        handle.write(SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    """Length, type, payload, and the CRC-32 of type and payload, as the PNG specification lays out a chunk."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
