"""Corpora: which characters, how many renders, which augmentation; rendered once and cached.

A :class:`CorpusSpec` decides a set of renders completely. :func:`render_corpus` draws
them one character at a time, each from ``numpy.random.default_rng([seed, salt, code
point])`` (the salt is the CRC-32 of the corpus's name), so two corpora never share
renders, and caches them keyed on everything that could change a pixel
(:func:`corpus_config`): the same Pillow (FreeType), NumPy and font files give the same
bytes on every x86-64 machine.
"""
from __future__ import annotations

import os
import unicodedata
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rkd.data.glyphs.fonts import (LETTER_CATEGORIES, MEASURE_SIZE, MIN_INK, fitted_bitmap, font_digest,
                                   resolve_fonts, script_characters)
from rkd.data.glyphs.raster import Augmentation, render_character
from rkd.data.glyphs.scripts import SCRIPTS

__all__ = ["CharacterGroup", "CorpusSpec", "Corpus", "RENDER_FORMAT", "corpus_config", "render_corpus"]

#: bump when a change to the code changes the pixels: cached renders of another format are not reused
RENDER_FORMAT = 1


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
    paths = resolve_fonts(spec.font_files, fonts_dir)
    return {
        "format": RENDER_FORMAT,
        "spec": asdict(spec),
        "scripts": {g.script: asdict(SCRIPTS[g.script]) for g in spec.groups},
        "fonts": {name: font_digest(path) for name, path in paths.items()},
        "libraries": _libraries(),
        "measure": [MEASURE_SIZE, MIN_INK, sorted(LETTER_CATEGORIES)],
    }


def _render(spec: CorpusSpec, fonts_dir, progress: bool) -> Corpus:
    from rkd.progress import progress_bar  # on the terminal, never into a notebook

    paths = resolve_fonts(spec.font_files, fonts_dir)
    classes: list[tuple[str, int]] = []
    for group in spec.groups:
        available = script_characters(group.script, fonts_dir)
        classes += [(group.script, cp) for cp in group.choose(available)]
    if len({cp for _, cp in classes}) != len(classes):
        raise ValueError(f"corpus {spec.name!r} names a character twice")
    salt = zlib.crc32(spec.name.encode("utf-8"))
    aug, renders = spec.augmentation, spec.renders_per_class
    images = np.empty((len(classes) * renders, aug.size, aug.size), dtype=np.uint8)
    bar = progress_bar(len(classes), desc=f"rendering {spec.name}", enabled=progress)
    for index, (script_name, code_point) in enumerate(classes):
        bar.update(1)
        bitmaps = [fitted_bitmap(paths[f], chr(code_point), aug.glyph_box) for f in SCRIPTS[script_name].fonts]
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
    from filelock import FileLock

    from rkd.cache import canonical_json, config_digest, default_cache_dir
    from rkd.runtime import atomic_write

    config = corpus_config(spec, fonts_dir)
    expected = canonical_json(config)
    folder = (default_cache_dir() / "glyphs") if cache_dir is None else Path(cache_dir).expanduser()
    path = folder / f"{spec.name}-{config_digest(config)}.npz"
    if not use_cache:
        return _render(spec, fonts_dir, progress)
    cached = _cached_corpus(path, expected)
    if cached is not None:
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(".lock")):  # another process rendering the same corpus: wait for it
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
