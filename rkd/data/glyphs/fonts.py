"""Fonts and FreeType: where the Noto files are, a character's bitmap, a script's usable characters.

FreeType (the copy inside Pillow's wheel) draws every bitmap. :func:`script_characters`
lists a script's usable characters: letters (Unicode category Lo, Lu, Ll or Lt) in the
script's code point ranges that every font of the script draws (a font lacking one
draws its .notdef box, which is detected by comparing bitmaps), with ink at least
``MIN_INK`` of the em, and not drawn exactly like a character already taken in any
font.
"""
from __future__ import annotations

import functools
import hashlib
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rkd.data.glyphs.scripts import SCRIPTS, Script

__all__ = ["GlyphFontsMissingError", "FONTS_ENV", "FONTS_PACKAGE", "DEBIAN_NOTO_DIR", "MEASURE_SIZE", "MIN_INK",
           "LETTER_CATEGORIES", "default_fonts_dir", "resolve_fonts", "font_digest", "rasterize", "script_characters",
           "fitted_bitmap"]

FONTS_ENV = "RKD_FONTS_DIR"
FONTS_PACKAGE = "fonts-noto-core"
DEBIAN_NOTO_DIR = Path("/usr/share/fonts/truetype/noto")
#: em size (pixels) at which characters are measured, compared and checked for coverage
MEASURE_SIZE = 64
#: a character's ink must span at least this fraction of the em (drops dots and dashes)
MIN_INK = 0.2
#: Unicode categories that count as characters of a script (modifier letters, Lm, are diacritic-like)
LETTER_CATEGORIES = frozenset({"Lo", "Lu", "Ll", "Lt"})
#: a code point no font maps: FreeType draws the .notdef glyph for it
_UNMAPPED = chr(0x10FFFF)


class GlyphFontsMissingError(FileNotFoundError):
    """The font files a glyph dataset needs are not there; the message says what to install."""


def default_fonts_dir() -> Path:
    """``$RKD_FONTS_DIR`` when set, else Debian's ``/usr/share/fonts/truetype/noto``."""
    return Path(os.environ.get(FONTS_ENV) or DEBIAN_NOTO_DIR).expanduser()


def resolve_fonts(files: Sequence[str], fonts_dir: str | os.PathLike | None) -> dict[str, Path]:
    """``{file name: path}`` for every file, or a :class:`GlyphFontsMissingError` listing the missing ones."""
    folder = default_fonts_dir() if fonts_dir is None else Path(fonts_dir).expanduser()
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        where = "does not exist" if not folder.is_dir() else f"lacks {len(missing)} of the {len(files)} font files"
        raise GlyphFontsMissingError(
            f"glyph datasets: the fonts folder {str(folder)!r} {where} ({shown}). The glyph world is drawn with "
            f"Debian's Noto fonts: install them with `sudo apt-get install {FONTS_PACKAGE}` (Debian/Ubuntu; they go "
            f"to {DEBIAN_NOTO_DIR}), or put the Noto .ttf files (https://github.com/notofonts, the hinted "
            f"'full' TTFs) in one folder and set ${FONTS_ENV} to it or pass fonts_dir=..."
        )
    return {name: folder / name for name in files}


@functools.lru_cache(maxsize=512)
def _file_sha256(path: str, _mtime_ns: int, _size: int) -> str:
    # modification time and size only key the cache: an edited file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def font_digest(path: Path) -> str:
    """SHA-256 of the font file (cached per path, modification time and size)."""
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)
def _font(path: str, size: int):
    from PIL import ImageFont

    # BASIC layout: one character maps through the cmap to one glyph, whether or not
    # Pillow finds libraqm (whose shaping could pick another glyph)
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def rasterize(path: Path, character: str, size: int) -> np.ndarray | None:
    """The character's antialiased bitmap (uint8, ink 255) cropped to its ink, or None without ink."""
    mask = _font(str(path), size).getmask(character, mode="L")
    width, height = mask.size
    if width == 0 or height == 0:
        return None
    bitmap = np.frombuffer(bytes(mask), dtype=np.uint8).reshape(height, width)
    rows, cols = np.flatnonzero(bitmap.any(axis=1)), np.flatnonzero(bitmap.any(axis=0))
    if len(rows) == 0:
        return None
    return np.ascontiguousarray(bitmap[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1])


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and a.shape == b.shape and bool(np.array_equal(a, b))


@functools.lru_cache(maxsize=256)
def _script_characters(script: Script, paths: tuple[Path, ...]) -> tuple[int, ...]:
    notdefs = [rasterize(path, _UNMAPPED, MEASURE_SIZE) for path in paths]
    seen: list[set[bytes]] = [set() for _ in paths]
    chosen = []
    for first, last in script.ranges:
        for code_point in range(first, last + 1):
            character = chr(code_point)
            if unicodedata.category(character) not in LETTER_CATEGORIES:
                continue
            bitmaps = [rasterize(path, character, MEASURE_SIZE) for path in paths]
            if any(b is None or _same(b, notdef) for b, notdef in zip(bitmaps, notdefs)):
                continue  # a font lacks it (draws .notdef) or draws nothing
            if any(max(b.shape) < MIN_INK * MEASURE_SIZE for b in bitmaps):
                continue
            keys = [f"{b.shape}".encode() + b.tobytes() for b in bitmaps]
            if any(key in taken for key, taken in zip(keys, seen)):
                continue  # drawn exactly like a character already taken
            for key, taken in zip(keys, seen):
                taken.add(key)
            chosen.append(code_point)
    return tuple(chosen)


def script_characters(script: str | Script, fonts_dir: str | os.PathLike | None = None) -> tuple[int, ...]:
    """The usable characters of ``script`` (code points, ascending); see the module docstring."""
    script = SCRIPTS[script] if isinstance(script, str) else script
    paths = resolve_fonts(script.fonts, fonts_dir)
    return _script_characters(script, tuple(paths[name] for name in script.fonts))


def fitted_bitmap(path: Path, character: str, box: int) -> np.ndarray:
    """The character rasterised at the size that makes its ink's longer side about ``box`` pixels."""
    measured = rasterize(path, character, MEASURE_SIZE)
    size = max(8, min(4 * MEASURE_SIZE, round(MEASURE_SIZE * box / max(measured.shape))))
    bitmap = rasterize(path, character, size)
    return measured if bitmap is None else bitmap
