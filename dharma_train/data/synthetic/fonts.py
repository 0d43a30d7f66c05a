"""The typefaces pages are drawn in: OFL families that pip installs (`fontpkg-*` packages) plus matplotlib's DejaVu.

Nothing is downloaded at run time: pyproject.toml depends on the font packages, so `pip install` brings them.
A family that is missing (an install without dependencies) is skipped with one warning, and DejaVu, which
matplotlib always ships, keeps every role drawable. Pillow's own default font is never used: it draws ç and ã
as empty boxes.
"""

from __future__ import annotations

import importlib.util
import logging
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

log = logging.getLogger(__name__)

# Role -> (fontpkg family, style, file name); the file name picks one face of a family that ships several.
FONTPKG_FACES = {
    "serif": (("EB Garamond", "normal", None), ("Crimson Pro", "normal", None), ("Lora", "normal", None),
              ("Libre Baskerville", "normal", None), ("PT Serif", "normal", "PT_Serif-Web-Regular.ttf")),
    "italic": (("EB Garamond", "italic", None), ("Crimson Pro", "italic", None), ("Lora", "italic", None),
               ("PT Serif", "italic", "PT_Serif-Web-Italic.ttf")),
    "sans": (("Roboto", "normal", None), ("Open Sans", "normal", None),
             ("PT Sans", "normal", "PT_Sans-Web-Regular.ttf")),
    "bold": (("PT Serif", "normal", "PT_Serif-Web-Bold.ttf"), ("PT Sans", "normal", "PT_Sans-Web-Bold.ttf"),
             ("IBM Plex Mono", "normal", "IBMPlexMono-Bold.ttf")),
    "mono": (("IBM Plex Mono", "normal", "IBMPlexMono-Regular.ttf"),),
    "hand": (("Caveat", "normal", None), ("Dancing Script", "normal", None), ("Kalam", "normal", "Kalam-Regular.ttf"),
             ("Indie Flower", "normal", None), ("Shadows Into Light", "normal", None)),
}
# One DejaVu face per role from matplotlib's mpl-data: the fallback that is always there.
DEJAVU_FACES = {
    "serif": ("DejaVuSerif.ttf",), "italic": ("DejaVuSerif-Italic.ttf", "DejaVuSans-Oblique.ttf"),
    "sans": ("DejaVuSans.ttf",), "bold": ("DejaVuSerif-Bold.ttf", "DejaVuSans-Bold.ttf"),
    "mono": ("DejaVuSansMono.ttf",), "hand": ("DejaVuSans-Oblique.ttf",),
}
ROLES = tuple(FONTPKG_FACES)
MISSING_GLYPH_PROBE = "\U0010fffd"  # a private-use code point no text font draws: its mask is the "no glyph" box


@dataclass(frozen=True)
class Face:
    """One font file and the role it plays (serif body, bold header, handwriting...)."""

    name: str
    role: str
    path: Path

    def font(self, size: int) -> ImageFont.FreeTypeFont:
        return load_font(self.path, size)

    def covers(self, text: str) -> bool:
        return all(char.isspace() or has_glyph(self.path, char) for char in set(text))


def faces(role: str) -> tuple[Face, ...]:
    """Every installed face for `role`, in a fixed order (so a seed picks the same face on every machine)."""
    if role not in FONTPKG_FACES:
        raise ValueError(f"unknown font role {role!r}; expected one of {list(ROLES)}")
    return _catalogue()[role]


def pick_face(rng: random.Random, role: str, text: str = "") -> Face:
    """A random face of `role` that has a glyph for every character of `text`; ValueError naming those it lacks."""
    candidates = list(faces(role))
    rng.shuffle(candidates)
    for face in candidates:
        if face.covers(text):
            return face
    missing = sorted({char for char in text if not char.isspace()
                      and not any(has_glyph(face.path, char) for face in candidates)})
    raise ValueError(f"no {role} font has a glyph for {missing} (fonts tried: {[f.name for f in candidates]})")


def missing_packages() -> list[str]:
    """fontpkg families named in FONTPKG_FACES that are not installed (pip install dharma_train brings them)."""
    return sorted({family for specs in FONTPKG_FACES.values() for family, _, _ in specs
                   if _fontpkg_files(family) is None})


@lru_cache(maxsize=512)
def load_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    """A cached font; BASIC layout measures words 4x faster than Raqm and Latin text needs no shaping."""
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


@lru_cache(maxsize=16384)
def has_glyph(path: Path, char: str) -> bool:
    """A character has a glyph when its bitmap differs from the font's missing-glyph box."""
    font = load_font(path, 16)
    missing = font.getmask(MISSING_GLYPH_PROBE)
    drawn = font.getmask(char)
    return drawn.size != missing.size or bytes(drawn) != bytes(missing)


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, tuple[Face, ...]]:
    """Installed fontpkg faces, then DejaVu, per role; built once per process."""
    absent = missing_packages()
    if absent:
        log.warning("font packages not installed, pages use fewer typefaces: %s (pip install dharma_train "
                    "installs them)", ", ".join(absent))
    catalogue = {}
    for role, specs in FONTPKG_FACES.items():
        found = [face for face in (_fontpkg_face(role, *spec) for spec in specs) if face]
        found += [Face(f"DejaVu {Path(name).stem}", role, path) for name in DEJAVU_FACES[role]
                  if (path := _dejavu_path(name))]
        if not found:
            raise RuntimeError(f"no {role} font installed: install matplotlib (it ships DejaVu) or the fontpkg "
                               f"packages {sorted({spec[0] for spec in specs})}")
        catalogue[role] = tuple(found)
    return catalogue


def _fontpkg_face(role: str, family: str, style: str, file_name: str | None) -> Face | None:
    files = _fontpkg_files(family)
    if not files:
        return None
    for path, file_style in files:
        if file_style == style and (file_name is None or path.name == file_name):
            return Face(family if style == "normal" else f"{family} {style}", role, path)
    return None


@lru_cache(maxsize=64)
def _fontpkg_files(family: str) -> tuple[tuple[Path, str], ...] | None:
    """(path, style) of every file of an installed fontpkg family, or None when it is not installed."""
    try:
        import fontpkg
    except ImportError:
        return None
    try:
        return tuple((file.path, file.style) for file in fontpkg.family(family).files)
    except fontpkg.FamilyNotInstalled:
        return None


def _dejavu_path(name: str) -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "mpl-data" / "fonts" / "ttf" / name
        if path.is_file():
            return path
    return None
