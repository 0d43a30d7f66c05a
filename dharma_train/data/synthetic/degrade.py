"""Scan and photo degradation of a clean page: skew, blur, paper texture, uneven light, low contrast, noise, dust.

Every parameter is drawn from the page's `random.Random`, so a seed fixes the result; pixel work is numpy on one
array, and per-pixel noise is a crop of one Gaussian bank built once per process from a fixed seed, which costs a
slice instead of a million random draws. Strengths are kept mild: a degradation may make a page harder to read,
never hide a character the ground truth names.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

NOISE_BANK_SIDE = 2048  # 16 MB of float32; pages up to this size take a plain slice
NOISE_BANK_SEED = 20240611
REFERENCE_SIDE = 1024  # blur radii and texture scales are given for a page whose long side is this


@dataclass(frozen=True)
class Degradation:
    """One page's degradation, drawn from its seed; `none()` leaves the page as drawn."""

    skew_degrees: float = 0.0
    photo: bool = False  # a phone photo: perspective, darker surround, light falling off across the page
    blur: float = 0.0  # box-blur radius in pixels at REFERENCE_SIDE (defocus, a worn scanner lens)
    texture: float = 0.0  # depth of low-frequency paper blotches, 0..1
    light: float = 0.0  # strength of the brightness gradient across the page, 0..1
    contrast: tuple[int, int] = (0, 255)  # black and white levels after scanning
    noise: float = 0.0  # standard deviation of per-pixel sensor noise, grey levels
    dust: int = 0  # dark specks per megapixel

    @classmethod
    def none(cls) -> "Degradation":
        return cls()


def sample_degradation(rng: random.Random) -> Degradation:
    """A scan most of the time, a phone photo sometimes; each effect on some pages only, so clean pages remain."""
    photo = rng.random() < 0.15
    return Degradation(
        skew_degrees=rng.uniform(-1.5, 1.5) if rng.random() < 0.5 else 0.0,
        photo=photo,
        blur=rng.uniform(0.3, 1.0) if rng.random() < 0.6 else 0.0,
        texture=rng.uniform(0.02, 0.08) if rng.random() < 0.6 else 0.0,
        light=rng.uniform(0.08, 0.25) if photo else (rng.uniform(0.02, 0.08) if rng.random() < 0.3 else 0.0),
        contrast=(rng.randint(0, 70), rng.randint(205, 255)) if rng.random() < 0.4 else (0, 255),
        noise=rng.uniform(2.0, 7.0) if rng.random() < 0.7 else 0.0,
        dust=rng.randint(5, 60) if rng.random() < 0.4 else 0,
    )


def degrade(page: Image.Image, rng: random.Random, degradation: Degradation | None = None) -> Image.Image:
    """The page as a scanner or a phone would return it; same mode and size as `page`."""
    spec = degradation or sample_degradation(rng)
    scale = max(page.size) / REFERENCE_SIDE
    paper = _paper_level(page)
    if spec.photo:
        page = _perspective(page, rng, paper)
    if spec.skew_degrees:
        page = page.rotate(spec.skew_degrees, resample=Image.Resampling.BILINEAR, fillcolor=paper)
    if spec.blur * scale >= 0.15:
        page = page.filter(ImageFilter.BoxBlur(spec.blur * scale))  # one box pass: a third of GaussianBlur's time
    pixels = np.asarray(page, dtype=np.float32)
    gain = np.ones(pixels.shape[:2], dtype=np.float32)
    if spec.texture:
        gain *= 1.0 - spec.texture * _blotches(pixels.shape[:2], rng)
    if spec.light:
        gain *= 1.0 - spec.light * _gradient(pixels.shape[:2], rng)
    pixels *= gain[..., None] if pixels.ndim == 3 else gain
    black, white = spec.contrast
    if (black, white) != (0, 255):
        pixels = black + pixels * ((white - black) / 255.0)
    if spec.noise:
        noise = _noise(pixels.shape[:2], rng) * (spec.noise / 32.0)
        pixels += noise[..., None] if pixels.ndim == 3 else noise
    out = np.clip(pixels, 0, 255).astype(np.uint8)
    if spec.dust:
        _sprinkle_dust(out, spec.dust, rng)
    return Image.fromarray(out, mode=page.mode)


def _paper_level(page: Image.Image) -> int | tuple[int, ...]:
    """The colour of the top-left corner, which the layout always leaves blank: fill for skew and perspective."""
    return page.getpixel((0, 0))


def _perspective(page: Image.Image, rng: random.Random, paper) -> Image.Image:
    """A phone held slightly off-axis: corners pulled by up to 3% of the side, the table showing at the edges."""
    width, height = page.size
    pull = [rng.uniform(0.0, 0.03) for _ in range(8)]
    corners = [(pull[0] * width, pull[1] * height), (width - pull[2] * width, pull[3] * height),
               (width - pull[4] * width, height - pull[5] * height), (pull[6] * width, height - pull[7] * height)]
    coefficients = _perspective_coefficients(corners, [(0, 0), (width, 0), (width, height), (0, height)])
    table = tuple(max(0, round(level * rng.uniform(0.35, 0.6))) for level in
                  (paper if isinstance(paper, tuple) else (paper,)))
    fill = table if isinstance(paper, tuple) else table[0]
    return page.transform(page.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR,
                          fillcolor=fill)


def _perspective_coefficients(source, target) -> tuple[float, ...]:
    """The 8 coefficients PIL's PERSPECTIVE transform wants: for each output pixel, where to read the input."""
    rows = []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    solution = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(source, dtype=np.float64).reshape(8))
    return tuple(float(value) for value in solution)


def _blotches(shape: tuple[int, int], rng: random.Random) -> np.ndarray:
    """Smooth 0..1 stains: a coarse random grid upsampled bilinearly (the look of recycled or aged paper)."""
    cells = rng.randint(6, 18)
    grid = np.frombuffer(rng.randbytes(cells * cells), dtype=np.uint8).reshape(cells, cells)
    smooth = Image.fromarray(grid, mode="L").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(smooth, dtype=np.float32) / 255.0


def _gradient(shape: tuple[int, int], rng: random.Random) -> np.ndarray:
    """0 where the light is, rising to 1 at the far side: a lamp or window on one side of the page."""
    height, width = shape
    angle = rng.uniform(0, 2 * np.pi)
    ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None] * np.sin(angle)
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :] * np.cos(angle)
    ramp = ys + xs
    return (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)


def _noise(shape: tuple[int, int], rng: random.Random) -> np.ndarray:
    """A crop of the noise bank at a random offset and orientation, tiled when the page is larger than it."""
    bank = _noise_bank()
    if rng.random() < 0.5:
        bank = bank.T
    height, width = shape
    if height <= NOISE_BANK_SIDE and width <= NOISE_BANK_SIDE:
        top, left = rng.randint(0, NOISE_BANK_SIDE - height), rng.randint(0, NOISE_BANK_SIDE - width)
        return bank[top:top + height, left:left + width]
    top, left = rng.randrange(NOISE_BANK_SIDE), rng.randrange(NOISE_BANK_SIDE)
    rows = np.arange(top, top + height) % NOISE_BANK_SIDE
    cols = np.arange(left, left + width) % NOISE_BANK_SIDE
    return bank[np.ix_(rows, cols)]


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Standard-normal noise times 32, as float32; the same in every process because its seed is fixed."""
    generator = np.random.default_rng(NOISE_BANK_SEED)
    return (generator.standard_normal((NOISE_BANK_SIDE, NOISE_BANK_SIDE), dtype=np.float32) * 32.0)


def _sprinkle_dust(pixels: np.ndarray, per_megapixel: int, rng: random.Random) -> None:
    """Small dark specks (dust on the scanner glass), 1 to 2 pixels each, in place."""
    height, width = pixels.shape[:2]
    count = max(1, round(per_megapixel * height * width / 1e6))
    for _ in range(count):
        y, x = rng.randrange(height), rng.randrange(width)
        size = rng.randint(1, 2)
        pixels[y:y + size, x:x + size] = rng.randint(40, 120)
