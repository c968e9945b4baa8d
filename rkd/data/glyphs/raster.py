"""The rasteriser's augmentation: from a character's font bitmaps to its renders.

Each render draws one character in one of its script's fonts (renders cycle through
the fonts, so every class has every font equally often) on a ``2 * size`` canvas, then
halves it:

1. the bitmap comes from FreeType at the font size that makes the character's ink's
   longer side ``glyph_box`` pixels (:func:`rkd.data.glyphs.fonts.fitted_bitmap`);
2. a random affine map places it: rotation, scale, horizontal stretch, shear (slant)
   and shift, sampled bilinearly;
3. strokes are thinned (half-way to a 3x3 minimum) or thickened (one or two 3x3 maxima);
4. the ink is dimmed to a random intensity, the canvas halved by 2x2 averaging, and
   uniform noise added.

Every step after rasterisation is integer arithmetic in NumPy (the affine map in
16.16 fixed point), and the random draws are integers, made render by render, so the
first k renders of a character do not depend on how many are drawn. No floating-point
kernel whose result could depend on the CPU touches a pixel; the only floats are the
affine matrix's entries, computed with Python's ``math`` and rounded to 1/65536.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Augmentation", "render_character"]

_FIXED = 16  # fractional bits of the fixed-point affine map
_ONE = 1 << _FIXED


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



def _draw(rng: np.random.Generator, renders: int, aug: Augmentation) -> tuple[np.ndarray, np.ndarray]:
    """Each render's integer parameters ``[renders, 8]`` (rotation, scale, stretch, shear,
    shift x, shift y, stroke option, ink) and noise ``[renders, size, size]``.

    Drawn render by render, so a prefix of the renders does not depend on their number.
    """
    lows = np.array([-aug.rotation_decidegrees, aug.scale_permille[0], 1000 - aug.stretch_permille,
                     -aug.shear_permille, -2 * aug.shift, -2 * aug.shift, 0, aug.ink[0]])
    highs = np.array([aug.rotation_decidegrees, aug.scale_permille[1], 1000 + aug.stretch_permille,
                      aug.shear_permille, 2 * aug.shift, 2 * aug.shift, len(aug.strokes) - 1, aug.ink[1]])
    params = np.empty((renders, len(lows)), dtype=np.int64)
    noise = np.empty((renders, aug.size, aug.size), dtype=np.int32)
    for r in range(renders):
        params[r] = rng.integers(lows, highs, endpoint=True)
        noise[r] = rng.integers(-aug.noise, aug.noise, size=(aug.size, aug.size), endpoint=True)
    return params, noise


def _place(bitmaps: Sequence[np.ndarray], params: np.ndarray, canvas: int) -> np.ndarray:
    """Each render's font bitmap (render r: font ``r % len(bitmaps)``) mapped onto a
    ``canvas`` x ``canvas`` image by the inverse of its affine map, sampled bilinearly.

    All pixel arithmetic is int32: coordinates in 16.16 fixed point (|value| < 2**24 for
    canvases up to a few hundred pixels), bilinear weights in 8 bits.
    """
    renders, fonts = len(params), len(bitmaps)
    height = max(b.shape[0] for b in bitmaps) + 2  # one zero pixel of margin on every side
    width = max(b.shape[1] for b in bitmaps) + 2
    stack = np.zeros((fonts, height, width), dtype=np.int32)
    for i, bitmap in enumerate(bitmaps):
        stack[i, 1: 1 + bitmap.shape[0], 1: 1 + bitmap.shape[1]] = bitmap

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
    return ((top * (256 - fy) + bottom * fy + (1 << 15)) >> 16).astype(np.uint8)


def _change_strokes(images: np.ndarray, strokes: np.ndarray) -> np.ndarray:
    """Thin (``-1``: half-way to the 3x3 minimum) or thicken (``k > 0``: k 3x3 maxima) each image."""
    if not (strokes != 0).any():
        return images
    changed = images.copy()
    thin = strokes == -1
    if thin.any():  # half-way to the 3x3 minimum: a full erosion erases the strokes of light fonts
        eroded = _neighbourhood(images[thin], np.minimum).astype(np.int32)
        changed[thin] = ((images[thin].astype(np.int32) + eroded + 1) >> 1).astype(np.uint8)
    for times in range(1, int(strokes.max()) + 1):
        thick = strokes >= times
        changed[thick] = _neighbourhood(changed[thick], np.maximum)
    return changed


def _dim_halve_and_add_noise(images: np.ndarray, ink: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Scale each canvas's ink to ``ink`` (0..255), halve it by 2x2 averaging, add ``noise``."""
    scaled = (images.astype(np.int32) * ink[:, None, None].astype(np.int32) + 127) // 255
    halved = scaled[:, 0::2, 0::2] + scaled[:, 0::2, 1::2] + scaled[:, 1::2, 0::2] + scaled[:, 1::2, 1::2]
    return np.clip(((halved + 2) >> 2) + noise, 0, 255).astype(np.uint8)


def render_character(bitmaps: Sequence[np.ndarray], renders: int, rng: np.random.Generator,
                     augmentation: Augmentation) -> np.ndarray:
    """``renders`` augmented renders (uint8 ``[renders, size, size]``) of one character.

    ``bitmaps`` holds the character as each font draws it (from
    :func:`rkd.data.glyphs.fonts.fitted_bitmap`); render r uses font ``r % len(bitmaps)``.
    The draws from ``rng`` are made render by render, so the first k renders are the same
    whatever ``renders`` is.
    """
    params, noise = _draw(rng, renders, augmentation)
    images = _place(bitmaps, params, 2 * augmentation.size)
    images = _change_strokes(images, np.array(augmentation.strokes, dtype=np.int64)[params[:, 6]])
    return _dim_halve_and_add_noise(images, params[:, 7], noise)
