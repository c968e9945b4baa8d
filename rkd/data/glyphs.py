"""The glyph world: stand-ins for every dataset of the paper, rendered from real fonts.

At ``scale="ci"`` the book cannot read CUB-200-2011 or ImageNet, and a 10-class
dataset such as Fashion-MNIST has nothing a teacher could pass on: train on five
classes, test on five others, and the untrained network does as well as the trained
one. The glyph world keeps the paper's regime at CPU size. Its classes are characters
of real writing systems, drawn by Debian's Noto fonts (``fonts-noto-core``): hundreds
of classes per dataset, fine-grained ones (syllabaries whose characters differ by a
small mark), a pretraining corpus of other scripts that plays ImageNet's role, and
class-disjoint retrieval splits where what the training classes teach carries over to
the test classes (they are the same script in the same fonts).

Datasets (``get_dataset(name, root, split)``; ``root`` is ignored and may be None):

=========================  ==========================  =================================================
name                       stands in for               splits
=========================  ==========================  =================================================
``glyphs_pretrain``        ImageNet                    train / val: renders of the same 1,353 characters
``glyphs_cub``             CUB-200-2011                train / test: first / second 100 of 200 Ethiopic
``glyphs_cars``            Cars196                     train / test: first / second 98 of 196 syllabics
``glyphs_sop``             Stanford Online Products    train / test: 500 / 500 Yi syllables, 6 renders
``glyphs_cifar100``        CIFAR-100                   train / test: renders of 100 characters
``glyphs_tiny_imagenet``   Tiny ImageNet               train / test: renders of 200 characters
``glyphs_omniglot``        Omniglot                    train / test (+ val, train_excluding_val): alphabets
``glyphs_mini_imagenet``   miniImageNet                train / val / test: 64 / 16 / 20 hieroglyphs
=========================  ==========================  =================================================

The split names and label conventions are those of the real readers (``cub200``,
``cifar100``, ``omniglot``, ``mini_imagenet``...), so an experiment swaps a real
dataset for its stand-in by name. Every dataset holds its images in memory like
:mod:`rkd.data.offline`: ``.images`` (uint8 ``[N, 1, 28, 28]``, strokes bright on black),
``.targets`` (0..C-1 within the split), ``.classes`` (``"Script/U+XXXX"``),
``.code_points`` and ``.class_scripts`` (per class), ``.stands_in_for`` (the paper's
dataset), ``.scripts``; ``dataset[i]`` is a float32 ``[1, 28, 28]`` in [0, 1] passed
through ``transform``.

Rendering
---------
Each render draws one character in one of its script's fonts (renders cycle through
the fonts, so every class has every font equally often) on a 56x56 canvas, then
halves it to 28x28:

1. FreeType (the copy inside Pillow's wheel) rasterises the character at the font
   size that makes its ink's longer side ``glyph_box`` pixels;
2. a random affine map places it: rotation, scale, horizontal stretch, shear (slant)
   and shift, sampled bilinearly;
3. strokes are thinned (half-way to a 3x3 minimum) or thickened (one or two 3x3 maxima);
4. the ink is dimmed to a random intensity, the canvas halved by 2x2 averaging, and
   uniform noise added.

The pretraining corpus is drawn in one regular font per script with milder
augmentation (:data:`PRETRAIN_AUGMENTATION`): the retrieval sets' several fonts,
slants and stroke widths are then a domain its trunk has not seen, and fine-tuning on
their training classes has something to teach (``book/glyphs.md`` gives the numbers).

Every step after rasterisation is integer arithmetic in NumPy (the affine map in
16.16 fixed point), and the random draws are integers from
``numpy.random.default_rng([seed, salt, code point])``, one class at a time and one
render after another, so the first k renders of a class do not depend on how many
are drawn. No floating-point kernel whose result could depend on the CPU touches a
pixel; the only floats are the affine matrix's entries, computed with Python's
``math`` and rounded to 1/65536. The same Pillow (FreeType), NumPy and font files
give the same bytes on every x86-64 machine; the renders are cached keyed on all of
them (see :func:`render_corpus`).

Characters
----------
:func:`script_characters` lists a script's usable characters: letters (Unicode
category Lo, Lu, Ll or Lt) in the script's code point ranges that every font of the
script draws (a font lacking one draws its .notdef box, which is detected by comparing
bitmaps), with ink at least ``MIN_INK`` of the em, and not drawn exactly like a
character already taken in any font. A role takes the first ``count`` of them or
``count`` spread evenly over them (see :class:`CharacterGroup`).
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from rkd.data.common import validate_split
from rkd.data.glyph_scripts import (
    CARS_SCRIPT,
    CIFAR100_SCRIPTS,
    CUB_SCRIPT,
    MINI_IMAGENET_SCRIPT,
    OMNIGLOT_BACKGROUND,
    OMNIGLOT_EVALUATION,
    OMNIGLOT_VAL,
    PRETRAIN_SCRIPTS,
    SCRIPTS,
    SOP_SCRIPT,
    TINY_IMAGENET_SCRIPTS,
    Script,
)
from rkd.data.offline import _InMemoryImages
from rkd.data.registry import DATASETS

__all__ = [
    "Augmentation",
    "CharacterGroup",
    "CorpusSpec",
    "Corpus",
    "Selection",
    "GlyphDataset",
    "GlyphFontsMissingError",
    "FONTS_ENV",
    "FONTS_PACKAGE",
    "DEBIAN_NOTO_DIR",
    "default_fonts_dir",
    "script_characters",
    "render_corpus",
    "render_character",
    "sample_grid",
    "GLYPH_DATASETS",
    "PRETRAIN_AUGMENTATION",
]

FONTS_ENV = "RKD_FONTS_DIR"
FONTS_PACKAGE = "fonts-noto-core"
DEBIAN_NOTO_DIR = Path("/usr/share/fonts/truetype/noto")
#: bump when a change to the code changes the pixels: cached renders of another format are not reused
RENDER_FORMAT = 1
#: em size (pixels) at which characters are measured, compared and checked for coverage
MEASURE_SIZE = 64
#: a character's ink must span at least this fraction of the em (drops dots and dashes)
MIN_INK = 0.2
#: Unicode categories that count as characters of a script (modifier letters, Lm, are diacritic-like)
LETTER_CATEGORIES = frozenset({"Lo", "Lu", "Ll", "Lt"})
#: a code point no font maps: FreeType draws the .notdef glyph for it
_UNMAPPED = chr(0x10FFFF)
_FIXED = 16  # fractional bits of the fixed-point affine map
_ONE = 1 << _FIXED


class GlyphFontsMissingError(FileNotFoundError):
    """The font files a glyph dataset needs are not there; the message says what to install."""


# ---------------------------------------------------------------------------- fonts


def default_fonts_dir() -> Path:
    """``$RKD_FONTS_DIR`` when set, else Debian's ``/usr/share/fonts/truetype/noto``."""
    return Path(os.environ.get(FONTS_ENV) or DEBIAN_NOTO_DIR).expanduser()


def _resolve_fonts(files: Sequence[str], fonts_dir: str | os.PathLike | None) -> dict[str, Path]:
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
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _font_digest(path: Path) -> str:
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)
def _font(path: str, size: int):
    from PIL import ImageFont

    # BASIC layout: one character maps through the cmap to one glyph, whether or not
    # Pillow finds libraqm (whose shaping could pick another glyph)
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def _rasterize(path: Path, character: str, size: int) -> np.ndarray | None:
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
    notdefs = [_rasterize(path, _UNMAPPED, MEASURE_SIZE) for path in paths]
    seen: list[set[bytes]] = [set() for _ in paths]
    chosen = []
    for first, last in script.ranges:
        for code_point in range(first, last + 1):
            character = chr(code_point)
            if unicodedata.category(character) not in LETTER_CATEGORIES:
                continue
            bitmaps = [_rasterize(path, character, MEASURE_SIZE) for path in paths]
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
    paths = _resolve_fonts(script.fonts, fonts_dir)
    return _script_characters(script, tuple(paths[name] for name in script.fonts))


def _fitted_bitmap(path: Path, character: str, box: int) -> np.ndarray:
    """The character rasterised at the size that makes its ink's longer side about ``box`` pixels."""
    measured = _rasterize(path, character, MEASURE_SIZE)
    size = max(8, min(4 * MEASURE_SIZE, round(MEASURE_SIZE * box / max(measured.shape))))
    bitmap = _rasterize(path, character, size)
    return measured if bitmap is None else bitmap


# ---------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Augmentation:
    """How one render varies. Lengths are pixels of the ``2 * size`` canvas; ranges are inclusive.

    Attributes:
        size: side of the output images (the canvas is twice as large and halved at the end).
        glyph_box: longer side of the character's ink before scaling.
        scale_permille: range of the scale factor, in thousandths.
        stretch_permille: the horizontal axis is scaled by a further factor in
            ``1 +- stretch/1000`` (characters get wider or narrower).
        shear_permille: horizontal shear (slant) up to this, in thousandths.
        rotation_decidegrees: rotation up to this, in tenths of a degree, either way.
        shift: translation up to this many canvas pixels, each axis, either way.
        strokes: stroke width changes, drawn uniformly: -1 thins (the mean of the image
            and its 3x3 minimum), 0 keeps, k > 0 thickens k times (3x3 maximum).
        ink: range of the strokes' brightness (0..255).
        noise: uniform integer noise in ``[-noise, noise]`` added to each output pixel.
    """

    size: int = 28
    glyph_box: int = 40
    scale_permille: tuple[int, int] = (750, 1050)
    stretch_permille: int = 150
    shear_permille: int = 250
    rotation_decidegrees: int = 150
    shift: int = 4
    strokes: tuple[int, ...] = (-1, 0, 1, 2)
    ink: tuple[int, int] = (150, 255)
    noise: int = 24

    def __post_init__(self):
        object.__setattr__(self, "scale_permille", tuple(self.scale_permille))
        object.__setattr__(self, "strokes", tuple(self.strokes))
        object.__setattr__(self, "ink", tuple(self.ink))
        if self.size < 4 or self.glyph_box < 4:
            raise ValueError(f"size and glyph_box must be >= 4, got {self.size}, {self.glyph_box}")
        low, high = self.scale_permille
        if not 0 < low <= high:
            raise ValueError(f"scale_permille must be 0 < low <= high, got {self.scale_permille}")
        if not 0 <= self.stretch_permille < 1000 or self.shear_permille < 0 or self.rotation_decidegrees < 0:
            raise ValueError("stretch_permille must be in [0, 1000); shear and rotation must be >= 0")
        if not self.strokes or any(s < -1 for s in self.strokes):
            raise ValueError(f"strokes must be a non-empty tuple of ints >= -1, got {self.strokes}")
        if not 0 <= self.ink[0] <= self.ink[1] <= 255 or not 0 <= self.noise <= 255 or self.shift < 0:
            raise ValueError("ink must be 0 <= low <= high <= 255; noise in 0..255; shift >= 0")


def _inverse_affine(decidegrees: int, scale_permille: int, stretch_permille: int, shear_permille: int):
    """16.16 fixed-point entries of the inverse of ``scale * R(angle) @ [[stretch, shear], [0, 1]]``.

    Computed with Python's ``math`` (correctly rounded on every platform for practical
    purposes) and rounded to 1/65536, so the pixel arithmetic after it is integer only.
    """
    angle = math.radians(decidegrees / 10)
    cos, sin = math.cos(angle), math.sin(angle)
    scale, stretch, shear = scale_permille / 1000, stretch_permille / 1000, shear_permille / 1000
    # forward M = scale * [[cos, -sin], [sin, cos]] @ [[stretch, shear], [0, 1]]
    a, b = scale * cos * stretch, scale * (cos * shear - sin)
    c, d = scale * sin * stretch, scale * (sin * shear + cos)
    det = a * d - b * c
    return tuple(round(v * _ONE) for v in (d / det, -b / det, -c / det, a / det))


def _neighbourhood(images: np.ndarray, reduce) -> np.ndarray:
    """3x3 maximum or minimum of each image of ``[R, H, W]`` (outside the image counts as 0)."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    height, width = images.shape[1:]
    out = images.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            reduce(out, padded[:, dy: dy + height, dx: dx + width], out=out)
    return out


def render_character(bitmaps: Sequence[np.ndarray], renders: int, rng: np.random.Generator,
                     augmentation: Augmentation) -> np.ndarray:
    """``renders`` augmented renders (uint8 ``[renders, size, size]``) of one character.

    ``bitmaps`` holds the character as each font draws it (from :func:`_fitted_bitmap`);
    render r uses font ``r % len(bitmaps)``. The draws from ``rng`` are made render by
    render, so the first k renders are the same whatever ``renders`` is.
    """
    aug = augmentation
    canvas = 2 * aug.size
    fonts = len(bitmaps)
    height = max(b.shape[0] for b in bitmaps) + 2  # one zero pixel of margin on every side
    width = max(b.shape[1] for b in bitmaps) + 2
    stack = np.zeros((fonts, height, width), dtype=np.int32)
    for i, bitmap in enumerate(bitmaps):
        stack[i, 1: 1 + bitmap.shape[0], 1: 1 + bitmap.shape[1]] = bitmap

    lows = np.array([-aug.rotation_decidegrees, aug.scale_permille[0], 1000 - aug.stretch_permille,
                     -aug.shear_permille, -2 * aug.shift, -2 * aug.shift, 0, aug.ink[0]])
    highs = np.array([aug.rotation_decidegrees, aug.scale_permille[1], 1000 + aug.stretch_permille,
                      aug.shear_permille, 2 * aug.shift, 2 * aug.shift, len(aug.strokes) - 1, aug.ink[1]])
    params = np.empty((renders, len(lows)), dtype=np.int64)
    noise = np.empty((renders, aug.size, aug.size), dtype=np.int32)
    for r in range(renders):  # render by render: a prefix of the renders does not depend on their number
        params[r] = rng.integers(lows, highs, endpoint=True)
        noise[r] = rng.integers(-aug.noise, aug.noise, size=(aug.size, aug.size), endpoint=True)

    # All pixel arithmetic is int32: coordinates in 16.16 fixed point (|value| < 2**24 for
    # canvases up to a few hundred pixels), bilinear weights in 8 bits.
    font_of = np.arange(renders) % fonts
    inverse = np.array([_inverse_affine(*p[:4]) for p in params.tolist()], dtype=np.int32)
    inverse = inverse.reshape(renders, 4, 1, 1)
    # canvas pixel centres relative to the canvas centre, in half pixels, minus the shift
    centre2 = 2 * np.arange(canvas, dtype=np.int32) + 1 - canvas
    px = centre2[None, None, :] - params[:, 4, None, None].astype(np.int32)
    py = centre2[None, :, None] - params[:, 5, None, None].astype(np.int32)
    glyph_w = np.array([b.shape[1] for b in bitmaps], dtype=np.int32)[font_of][:, None, None]
    glyph_h = np.array([b.shape[0] for b in bitmaps], dtype=np.int32)[font_of][:, None, None]
    # glyph coordinates (16.16) with the origin at the first pixel's centre: M^-1 p + centre - 1/2,
    # plus one pixel for the margin
    u = ((inverse[:, 0] * px + inverse[:, 1] * py) >> 1) + (glyph_w << (_FIXED - 1)) + (_ONE >> 1)
    v = ((inverse[:, 2] * px + inverse[:, 3] * py) >> 1) + (glyph_h << (_FIXED - 1)) + (_ONE >> 1)
    fx, fy = (u & (_ONE - 1)) >> 8, (v & (_ONE - 1)) >> 8  # 8-bit bilinear weights
    x0, y0 = u >> _FIXED, v >> _FIXED
    # reads outside the glyph are clipped onto its zero margin
    x1 = np.clip(x0 + 1, 0, width - 1)
    np.clip(x0, 0, width - 1, out=x0)
    y1 = np.clip(y0 + 1, 0, height - 1)
    np.clip(y0, 0, height - 1, out=y0)
    flat = stack.reshape(-1)
    base = (font_of.astype(np.int32) * (height * width))[:, None, None]
    row0, row1 = base + y0 * width, base + y1 * width
    top = flat[row0 + x0] * (256 - fx) + flat[row0 + x1] * fx
    bottom = flat[row1 + x0] * (256 - fx) + flat[row1 + x1] * fx
    images = ((top * (256 - fy) + bottom * fy + (1 << 15)) >> 16).astype(np.uint8)

    strokes = np.array(aug.strokes, dtype=np.int64)[params[:, 6]]
    if (strokes != 0).any():
        changed = images.copy()
        thin = strokes == -1
        if thin.any():  # half-way to the 3x3 minimum: a full erosion erases the strokes of light fonts
            eroded = _neighbourhood(images[thin], np.minimum).astype(np.int32)
            changed[thin] = ((images[thin].astype(np.int32) + eroded + 1) >> 1).astype(np.uint8)
        for times in range(1, int(strokes.max()) + 1):
            thick = strokes >= times
            changed[thick] = _neighbourhood(changed[thick], np.maximum)
        images = changed

    ink = params[:, 7, None, None].astype(np.int32)
    scaled = (images.astype(np.int32) * ink + 127) // 255
    halved = scaled[:, 0::2, 0::2] + scaled[:, 0::2, 1::2] + scaled[:, 1::2, 0::2] + scaled[:, 1::2, 1::2]
    return np.clip(((halved + 2) >> 2) + noise, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- corpora


@dataclass(frozen=True)
class CharacterGroup:
    """Characters of one script: ``count`` of them (None: all), the ``"first"`` ones in
    code point order or ``"spread"`` evenly over the script's list. With ``limit``,
    ``count`` is an upper bound (a script with fewer characters gives them all);
    without, a script with fewer characters is an error."""

    script: str
    count: int | None = None
    pick: str = "spread"
    limit: bool = False

    def __post_init__(self):
        if self.script not in SCRIPTS:
            raise ValueError(f"unknown script {self.script!r}; known: {', '.join(sorted(SCRIPTS))}")
        if self.pick not in ("first", "spread"):
            raise ValueError(f"pick must be 'first' or 'spread', got {self.pick!r}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be positive or None, got {self.count}")

    def choose(self, available: Sequence[int]) -> list[int]:
        if self.count is None:
            return list(available)
        if self.count >= len(available) and self.limit:
            return list(available)
        if self.count > len(available):
            raise ValueError(f"script {self.script} has {len(available)} usable characters, {self.count} were asked")
        if self.pick == "first":
            return list(available[: self.count])
        n = len(available)
        return [available[(i * n) // self.count] for i in range(self.count)]


@dataclass(frozen=True)
class CorpusSpec:
    """Everything that decides a set of renders: characters, renders per character, augmentation, seed.

    ``name`` salts the random draws, so two corpora never share renders.
    """

    name: str
    groups: tuple[CharacterGroup, ...]
    renders_per_class: int
    augmentation: Augmentation = field(default_factory=Augmentation)
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "groups", tuple(self.groups))
        if not self.groups:
            raise ValueError("a corpus needs at least one character group")
        if isinstance(self.renders_per_class, bool) or not isinstance(self.renders_per_class, int) \
                or self.renders_per_class < 1:
            raise ValueError(f"renders_per_class must be a positive int, got {self.renders_per_class!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")

    @property
    def font_files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for g in self.groups for f in SCRIPTS[g.script].fonts))


@dataclass
class Corpus:
    """Rendered characters: ``images[i]`` is render ``render_index[i]`` of class ``class_index[i]``."""

    images: np.ndarray  # uint8 [N, size, size]
    class_index: np.ndarray  # int64 [N]
    render_index: np.ndarray  # int64 [N]
    code_points: np.ndarray  # int64 [C]
    class_scripts: list[str]  # [C]
    path: Path | None = None


def _libraries() -> dict[str, str]:
    import PIL
    from PIL import features

    return {"pillow": PIL.__version__, "freetype": str(features.version("freetype2")), "numpy": np.__version__,
            "unicode": unicodedata.unidata_version}


def corpus_config(spec: CorpusSpec, fonts_dir: str | os.PathLike | None = None) -> dict:
    """The cache key of ``spec``: the spec itself, each script's fonts and ranges, the
    SHA-256 of every font file, the versions of Pillow, FreeType, NumPy and Unicode data,
    and the render format. Anything that could change a pixel is in it."""
    paths = _resolve_fonts(spec.font_files, fonts_dir)
    return {
        "format": RENDER_FORMAT,
        "spec": asdict(spec),
        "scripts": {g.script: asdict(SCRIPTS[g.script]) for g in spec.groups},
        "fonts": {name: _font_digest(path) for name, path in paths.items()},
        "libraries": _libraries(),
        "measure": [MEASURE_SIZE, MIN_INK, sorted(LETTER_CATEGORIES)],
    }


def _render(spec: CorpusSpec, fonts_dir, progress: bool) -> Corpus:
    from ..progress import progress_bar  # on the terminal, never into a notebook

    paths = _resolve_fonts(spec.font_files, fonts_dir)
    classes: list[tuple[str, int]] = []
    for group in spec.groups:
        script = SCRIPTS[group.script]
        available = _script_characters(script, tuple(paths[f] for f in script.fonts))
        classes += [(group.script, cp) for cp in group.choose(available)]
    if len({cp for _, cp in classes}) != len(classes):
        raise ValueError(f"corpus {spec.name!r} names a character twice")
    salt = zlib.crc32(spec.name.encode("utf-8"))
    aug, renders = spec.augmentation, spec.renders_per_class
    images = np.empty((len(classes) * renders, aug.size, aug.size), dtype=np.uint8)
    bar = progress_bar(len(classes), desc=f"rendering {spec.name}", enabled=progress)
    for index, (script_name, code_point) in enumerate(classes):
        bar.update(1)
        bitmaps = [_fitted_bitmap(paths[f], chr(code_point), aug.glyph_box) for f in SCRIPTS[script_name].fonts]
        rng = np.random.default_rng([spec.seed, salt, code_point])
        images[index * renders: (index + 1) * renders] = render_character(bitmaps, renders, rng, aug)
    bar.close()
    return Corpus(
        images=images,
        class_index=np.repeat(np.arange(len(classes), dtype=np.int64), renders),
        render_index=np.tile(np.arange(renders, dtype=np.int64), len(classes)),
        code_points=np.array([cp for _, cp in classes], dtype=np.int64),
        class_scripts=[s for s, _ in classes],
    )


def render_corpus(spec: CorpusSpec, *, fonts_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, progress: bool = True,
                  use_cache: bool = True) -> Corpus:
    """The renders of ``spec``, from the cache when an entry for the same configuration exists.

    The cache entry is ``<cache_dir>/<spec.name>-<sha256 of the config>.npz`` (default
    ``rkd.cache.default_cache_dir() / "glyphs"``), written atomically; it records its
    configuration (:func:`corpus_config`), and an entry whose recorded configuration
    differs (another font file, Pillow or NumPy version, augmentation...) is never used:
    it is rendered again and replaced.
    """
    from rkd.cache import canonical_json, config_digest, default_cache_dir
    from rkd.runtime import atomic_write, exclusive

    config = corpus_config(spec, fonts_dir)
    expected = canonical_json(config)
    folder = (default_cache_dir() / "glyphs") if cache_dir is None else Path(cache_dir).expanduser()
    path = folder / f"{spec.name}-{config_digest(config)}.npz"
    if not use_cache:
        return _render(spec, fonts_dir, progress)
    cached = _cached_corpus(path, expected)
    if cached is not None:
        return cached
    with exclusive(path.with_suffix(".lock")):  # another process rendering the same corpus: wait for it
        cached = _cached_corpus(path, expected)
        if cached is not None:
            return cached
        corpus = _render(spec, fonts_dir, progress)
        with atomic_write(path, "wb") as handle:
            np.savez(handle, config=np.array(expected), images=corpus.images, class_index=corpus.class_index,
                     render_index=corpus.render_index, code_points=corpus.code_points,
                     class_scripts=np.array(corpus.class_scripts))
    corpus.path = path
    return corpus


def _cached_corpus(path: Path, expected: str) -> Corpus | None:
    """The cache entry at ``path`` if it holds the renders of configuration ``expected``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as entry:
            if str(entry["config"]) == expected:
                return Corpus(images=entry["images"], class_index=entry["class_index"],
                              render_index=entry["render_index"], code_points=entry["code_points"],
                              class_scripts=[str(s) for s in entry["class_scripts"]], path=path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        pass  # unreadable (truncated by hand, say): render again and replace it
    return None


# ---------------------------------------------------------------------------- datasets


def _augmentation(value: Augmentation | dict | None, default: Augmentation) -> Augmentation:
    if value is None:
        return default
    if isinstance(value, Augmentation):
        return value
    if isinstance(value, dict):
        return Augmentation(**value)
    raise TypeError(f"augmentation must be an Augmentation, a dict of its fields or None, got {type(value).__name__}")


@dataclass
class Selection:
    """The samples of one split: corpus indices, the class id of each, the name of every
    class id, and (Omniglot) the quarter turns applied to each image."""

    keep: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    class_character: np.ndarray  # class id -> the corpus character it draws
    quarter_turns: np.ndarray | None = None


class GlyphDataset(_InMemoryImages):
    """A glyph stand-in: renders of a :class:`CorpusSpec`, split as the real dataset is.

    Subclasses say which characters (:meth:`groups`), how many renders
    (:attr:`renders`), and which samples form each split (:meth:`select`). Every
    dataset accepts, besides ``root`` (ignored), ``split`` and ``transform``:

    - ``seed`` (0): the world's seed; another seed draws other renders of the same characters;
    - ``augmentation``: an :class:`Augmentation` or a dict of its fields (default: the
      role's ``default_augmentation``, :class:`Augmentation()` except for the pretraining
      corpus);
    - ``fonts_dir``: the folder of the Noto .ttf files (default ``$RKD_FONTS_DIR``, else
      ``/usr/share/fonts/truetype/noto``);
    - ``cache_dir``: where renders are cached (default ``rkd.cache.default_cache_dir() / "glyphs"``);
    - ``progress``: show a progress bar while rendering (True);

    and the size options of its role (see each class). Attributes beyond those of
    :mod:`rkd.data.offline`'s datasets: ``stands_in_for``, ``code_points`` and
    ``class_scripts`` (per class), ``scripts``, ``class_ids`` (the classes' ids in the
    whole corpus), ``render_index`` (per image), ``corpus_spec`` and ``cache_path``.
    """

    name: str = ""
    stands_in_for: str = ""
    splits: tuple[str, ...] = ("train", "test")
    default_augmentation: Augmentation = Augmentation()

    def __init__(self, root, split: str, transform: Callable | None = None, *, seed: int = 0,
                 augmentation: Augmentation | dict | None = None, fonts_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True):
        validate_split(self.name, split, self.splits)
        spec = CorpusSpec(self.name, tuple(self.groups()), self.renders,
                          _augmentation(augmentation, self.default_augmentation), seed)
        corpus = render_corpus(spec, fonts_dir=fonts_dir, cache_dir=cache_dir, progress=progress)
        chosen = self.select(corpus, split)
        images = corpus.images[chosen.keep]
        if chosen.quarter_turns is not None:
            images = images.copy()
            for turns in range(1, 4):
                rotated = chosen.quarter_turns == turns
                images[rotated] = np.rot90(images[rotated], k=turns, axes=(1, 2))  # counter-clockwise
        super().__init__(images, chosen.labels, chosen.class_names, split, "glyphs", transform)
        self.root = None
        self.corpus_spec, self.cache_path = spec, corpus.path
        self.class_ids = sorted(set(chosen.labels.tolist()))
        characters = [int(chosen.class_character[c]) for c in self.class_ids]
        self.code_points = torch.tensor([int(corpus.code_points[c]) for c in characters], dtype=torch.long)
        self.class_scripts = [corpus.class_scripts[c] for c in characters]
        self.scripts = list(dict.fromkeys(self.class_scripts))
        self.render_index = torch.from_numpy(corpus.render_index[chosen.keep].astype(np.int64))

    @property
    def renders(self) -> int:
        """Renders per character in the corpus."""
        raise NotImplementedError

    def groups(self) -> list[CharacterGroup]:
        """The corpus's characters, group by group (their order is the class order)."""
        raise NotImplementedError

    def select(self, corpus: Corpus, split: str) -> Selection:
        raise NotImplementedError

    @staticmethod
    def character_names(corpus: Corpus) -> list[str]:
        return [f"{script}/U+{cp:04X}" for script, cp in zip(corpus.class_scripts, corpus.code_points.tolist())]

    @classmethod
    def plain_selection(cls, corpus: Corpus, keep: np.ndarray) -> Selection:
        """The samples ``keep``, each labelled with its character."""
        return Selection(keep, corpus.class_index[keep], cls.character_names(corpus),
                         np.arange(len(corpus.code_points)))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, images={len(self)}, classes={self.num_classes}, "
                f"stands_in_for={self.stands_in_for!r})")


class _ClassHalves(GlyphDataset):
    """Retrieval: the first half of the classes (in corpus order) train, the second half test,
    as the paper splits CUB-200-2011 and Cars196."""

    def select(self, corpus, split):
        classes = len(corpus.code_points)
        half = classes // 2
        chosen = corpus.class_index < half if split == "train" else corpus.class_index >= half
        return self.plain_selection(corpus, np.flatnonzero(chosen))


class _RenderSplit(GlyphDataset):
    """Classification: every class in every split; the first ``split_renders[0]`` renders of
    each class form the first split, the next ``split_renders[1]`` the second, and so on."""

    split_renders: tuple[int, ...] = ()

    @property
    def renders(self) -> int:
        return sum(self.split_renders)

    def select(self, corpus, split):
        index = self.splits.index(split)
        start = sum(self.split_renders[:index])
        chosen = (corpus.render_index >= start) & (corpus.render_index < start + self.split_renders[index])
        return self.plain_selection(corpus, np.flatnonzero(chosen))


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


#: the pretraining corpus's augmentation: upright (+-5 degrees), one stroke width, full
#: ink, little noise; scale and shift as everywhere. The downstream sets' slant, stretch,
#: stroke widths and faint ink (and their several fonts) are what fine-tuning must learn.
PRETRAIN_AUGMENTATION = Augmentation(rotation_decidegrees=50, shear_permille=0, stretch_permille=0, strokes=(0,),
                                     ink=(255, 255), noise=8)


@DATASETS.register("glyphs_pretrain")
class GlyphPretrain(_RenderSplit):
    """ImageNet's role: every usable character of 19 scripts (:data:`PRETRAIN_SCRIPTS`,
    1,353 characters, one regular font each, :data:`PRETRAIN_AUGMENTATION`), to
    pretrain the trunks as classifiers. ``split="train"``: the first ``train_renders``
    (20) renders of each character; ``split="val"``: the next ``val_renders`` (4)."""

    name, stands_in_for, splits = "glyphs_pretrain", "ImageNet", ("train", "val")
    default_augmentation = PRETRAIN_AUGMENTATION

    def __init__(self, root, split, transform=None, *, train_renders: int = 20, val_renders: int = 4, **options):
        self.split_renders = (_positive("train_renders", train_renders), _positive("val_renders", val_renders))
        super().__init__(root, split, transform, **options)

    def groups(self):
        return [CharacterGroup(script) for script in PRETRAIN_SCRIPTS]


class _FineGrained(_ClassHalves):
    script: str = ""
    num_classes_default: int = 0

    def __init__(self, root, split, transform=None, *, renders_per_class: int = 30, **options):
        self._renders = _positive("renders_per_class", renders_per_class)
        super().__init__(root, split, transform, **options)

    @property
    def renders(self) -> int:
        return self._renders

    def groups(self):
        return [CharacterGroup(self.script, self.num_classes_default, "first")]


@DATASETS.register("glyphs_cub")
class GlyphCUB(_FineGrained):
    """CUB-200-2011's role: the first 200 Ethiopic characters (syllables: 25 consonants in
    8 vowel forms that differ by a small mark), four fonts, ``renders_per_class`` (30)
    renders each. Classes 0-99 train, 100-199 test."""

    name, stands_in_for = "glyphs_cub", "CUB-200-2011"
    script, num_classes_default = CUB_SCRIPT, 200


@DATASETS.register("glyphs_cars")
class GlyphCars(_FineGrained):
    """Cars196's role: the first 196 Canadian Aboriginal syllabics (a few shapes whose
    orientation gives the vowel, with dots and finals), two fonts, ``renders_per_class``
    (30) renders each. Classes 0-97 train, 98-195 test."""

    name, stands_in_for = "glyphs_cars", "Cars196"
    script, num_classes_default = CARS_SCRIPT, 196


@DATASETS.register("glyphs_sop")
class GlyphSOP(_FineGrained):
    """Stanford Online Products' role: many classes, few images each: the first
    ``num_classes`` (1,000) Yi syllables, one font, ``renders_per_class`` (6) renders
    each (SOP has 5.3 images per class). The first half of the classes train, the
    second half test."""

    name, stands_in_for = "glyphs_sop", "Stanford Online Products"
    script = SOP_SCRIPT

    def __init__(self, root, split, transform=None, *, num_classes: int = 1000, renders_per_class: int = 6,
                 **options):
        self.num_classes_default = _positive("num_classes", num_classes)
        super().__init__(root, split, transform, renders_per_class=renders_per_class, **options)


@DATASETS.register("glyphs_cifar100")
class GlyphCIFAR100(_RenderSplit):
    """CIFAR-100's role: 100 classes, 5 characters spread over each of 20 scripts
    (:data:`CIFAR100_SCRIPTS`; CIFAR-100's 20 superclasses of 5 classes), trained from
    scratch. ``train``: the first ``train_renders`` (50) renders of each class;
    ``test``: the next ``test_renders`` (10). ``.coarse_targets`` is the script index."""

    name, stands_in_for = "glyphs_cifar100", "CIFAR-100"
    scripts_table, per_script = CIFAR100_SCRIPTS, 5

    def __init__(self, root, split, transform=None, *, train_renders: int = 50, test_renders: int = 10,
                 **options):
        self.split_renders = (_positive("train_renders", train_renders), _positive("test_renders", test_renders))
        super().__init__(root, split, transform, **options)
        order = {script: i for i, script in enumerate(self.scripts_table)}
        class_coarse = torch.tensor([order[s] for s in self.class_scripts], dtype=torch.long)
        self.coarse_targets = class_coarse[self.targets]

    def groups(self):
        return [CharacterGroup(script, self.per_script, "spread") for script in self.scripts_table]


@DATASETS.register("glyphs_tiny_imagenet")
class GlyphTinyImageNet(GlyphCIFAR100):
    """Tiny ImageNet's role: 200 classes, 20 characters spread over each of 10 scripts
    (:data:`TINY_IMAGENET_SCRIPTS`). ``train``: the first ``train_renders`` (50)
    renders of each class; ``test``: the next ``test_renders`` (10)."""

    name, stands_in_for = "glyphs_tiny_imagenet", "Tiny ImageNet"
    scripts_table, per_script = TINY_IMAGENET_SCRIPTS, 20


#: Omniglot's alphabets hold 14 to 55 characters; the stand-in's hold at most this many
OMNIGLOT_MAX_CHARACTERS = 32
_QUARTER_TURNS = {0: 0, 90: 1, 180: 2, 270: 3}


@DATASETS.register("glyphs_omniglot")
class GlyphOmniglot(GlyphDataset):
    """Omniglot's role: alphabets are scripts. 30 background alphabets
    (:data:`OMNIGLOT_BACKGROUND`) form ``train``, 20 evaluation alphabets
    (:data:`OMNIGLOT_EVALUATION`) form ``test``; ``val`` is 5 of the background ones
    (:data:`OMNIGLOT_VAL`) and ``train_excluding_val`` the other 25, the split names of
    the ``omniglot`` reader. Each alphabet contributes up to 32 characters spread over
    it (920 + 613 = 1,533 in all; Omniglot has 1,623), each drawn ``renders_per_class`` (20) times
    (Omniglot's 20 drawers), one font.

    ``rotations`` (default 0, 90, 180, 270, as the ``omniglot`` reader): each character
    in each rotation is a class (exact quarter turns, counter-clockwise), as Vinyals et
    al. count them; ``.classes`` are ``"Script/U+XXXX/rotDDD"``, ordered by (alphabet
    order, character, rotation).
    """

    name, stands_in_for = "glyphs_omniglot", "Omniglot"
    splits = ("train", "test", "val", "train_excluding_val")

    def __init__(self, root, split, transform=None, *, renders_per_class: int = 20,
                 rotations: Sequence[int] = (0, 90, 180, 270), **options):
        self._renders = _positive("renders_per_class", renders_per_class)
        angles = [int(a) for a in rotations]
        if not angles or len(set(angles)) != len(angles) or any(a not in _QUARTER_TURNS for a in angles):
            raise ValueError(f"glyphs_omniglot: rotations must be distinct angles among 0, 90, 180, 270, "
                             f"got {rotations!r}")
        self.rotations = tuple(angles)
        super().__init__(root, split, transform, **options)
        self.alphabets = self.class_scripts  # the alphabet of each class
        self.angles = [self.rotations[c % len(self.rotations)] for c in self.original_targets.tolist()]

    @property
    def renders(self) -> int:
        return self._renders

    def groups(self):
        return [CharacterGroup(s, OMNIGLOT_MAX_CHARACTERS, "spread", limit=True)
                for s in OMNIGLOT_BACKGROUND + OMNIGLOT_EVALUATION]

    def _alphabets(self, split: str) -> set[str]:
        if split == "train":
            return set(OMNIGLOT_BACKGROUND)
        if split == "val":
            return set(OMNIGLOT_VAL)
        if split == "train_excluding_val":
            return set(OMNIGLOT_BACKGROUND) - set(OMNIGLOT_VAL)
        return set(OMNIGLOT_EVALUATION)

    def select(self, corpus, split):
        wanted = self._alphabets(split)
        in_split = np.array([script in wanted for script in corpus.class_scripts])
        characters = np.flatnonzero(in_split[corpus.class_index])
        n = len(self.rotations)
        keep = np.repeat(characters, n)  # every image once per rotation
        rotation = np.tile(np.arange(n), len(characters))
        turns = np.array([_QUARTER_TURNS[a] for a in self.rotations])[rotation]
        names = [f"{name}/rot{angle:03d}" for name in self.character_names(corpus) for angle in self.rotations]
        return Selection(keep, corpus.class_index[keep] * n + rotation, names,
                         np.repeat(np.arange(len(corpus.code_points)), n), turns)


#: seed of the permutation that deals miniImageNet's classes into its three splits
MINI_IMAGENET_SPLIT_SEED = 0
MINI_IMAGENET_SPLIT_SIZES = (("train", 64), ("val", 16), ("test", 20))


@DATASETS.register("glyphs_mini_imagenet")
class GlyphMiniImageNet(GlyphDataset):
    """miniImageNet's role: 100 Egyptian hieroglyphs spread over the script (Gardiner's
    signs: people, animals, plants, buildings, tools), dealt at random (a fixed
    permutation, seed 0) into 64 ``train``, 16 ``val`` and 20 ``test`` classes, as Ravi &
    Larochelle deal ImageNet classes; ``renders_per_class`` (60) renders each, one font."""

    name, stands_in_for = "glyphs_mini_imagenet", "miniImageNet"
    splits = ("train", "val", "test")

    def __init__(self, root, split, transform=None, *, renders_per_class: int = 60, **options):
        self._renders = _positive("renders_per_class", renders_per_class)
        super().__init__(root, split, transform, **options)

    @property
    def renders(self) -> int:
        return self._renders

    def groups(self):
        return [CharacterGroup(MINI_IMAGENET_SCRIPT, sum(n for _, n in MINI_IMAGENET_SPLIT_SIZES), "spread")]

    def select(self, corpus, split):
        order = np.random.default_rng(MINI_IMAGENET_SPLIT_SEED).permutation(len(corpus.code_points))
        start = 0
        for name, size in MINI_IMAGENET_SPLIT_SIZES:
            if name == split:
                chosen = np.sort(order[start: start + size])
                break
            start += size
        return self.plain_selection(corpus, np.flatnonzero(np.isin(corpus.class_index, chosen)))


#: registry name -> dataset class, for the glyph family alone
GLYPH_DATASETS: dict[str, type[GlyphDataset]] = {
    cls.name: cls for cls in (GlyphPretrain, GlyphCUB, GlyphCars, GlyphSOP, GlyphCIFAR100, GlyphTinyImageNet,
                              GlyphOmniglot, GlyphMiniImageNet)
}


# ---------------------------------------------------------------------------- pictures


def sample_grid(dataset, classes: int = 8, per_class: int = 6, *, title: str | None = None):
    """A matplotlib Figure of ``per_class`` images of each of the first ``classes``
    classes of ``dataset`` (one row per class, labelled with its class name).

    Works with any dataset that has ``.targets`` and ``.classes`` and returns
    ``[1, H, W]`` tensors or 2-D arrays (the glyph datasets, Fashion-MNIST, digits).
    Images are shown untransformed when the dataset has ``float_images``.
    """
    import matplotlib.pyplot as plt

    targets = torch.as_tensor(dataset.targets)
    shown = [c for c in range(int(targets.max()) + 1) if bool((targets == c).any())][:classes]
    figure, axes = plt.subplots(len(shown), per_class, figsize=(per_class * 0.8 + 1.6, len(shown) * 0.8),
                                squeeze=False)
    for row, class_id in zip(axes, shown):
        indices = torch.nonzero(targets == class_id).flatten()[:per_class].tolist()
        for column, axis in enumerate(row):
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if column >= len(indices):
                continue
            if hasattr(dataset, "float_images"):
                image = dataset.float_images([indices[column]])[0]
            else:
                image = dataset[indices[column]][0]
            image = torch.as_tensor(np.asarray(image)).squeeze()
            axis.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1 if image.is_floating_point() else 255)
        row[0].set_ylabel(str(dataset.classes[class_id]), rotation=0, ha="right", va="center", fontsize=7)
    figure.suptitle(title if title is not None else
                    f"{getattr(dataset, 'name', type(dataset).__name__)}"
                    + (f" (stands in for {dataset.stands_in_for})" if getattr(dataset, "stands_in_for", "") else "")
                    + f", split {getattr(dataset, 'split', '?')!r}", fontsize=9)
    figure.tight_layout()
    return figure
