"""The glyph datasets: which characters each stand-in draws and how it is split.

Every stand-in is a registered dataset (``get_dataset(name, root, split)``; ``root``
is ignored and may be None) with the split names and label conventions of the reader
of the paper's dataset it stands in for (``cub200``, ``cifar100``, ``omniglot``,
``mini_imagenet``...), so an experiment swaps a real dataset for its stand-in by name.
Which scripts play which role is in :mod:`rkd.data.glyphs.roles`; how a character is
drawn is the rasteriser's business (:mod:`rkd.data.glyphs.fonts`,
:mod:`rkd.data.glyphs.raster`, :mod:`rkd.data.glyphs.corpus`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rkd.data.common import validate_split
from rkd.data.glyphs.corpus import CharacterGroup, Corpus, CorpusSpec, render_corpus
from rkd.data.glyphs.raster import Augmentation
from rkd.data.glyphs.roles import (CARS_SCRIPT, CIFAR100_SCRIPTS, CUB_SCRIPT, MINI_IMAGENET_SCRIPT, OMNIGLOT_BACKGROUND,
                                   OMNIGLOT_EVALUATION, OMNIGLOT_VAL, PRETRAIN_AUGMENTATION, PRETRAIN_SCRIPTS,
                                   SOP_SCRIPT, TINY_IMAGENET_SCRIPTS)
from rkd.data.offline import _InMemoryImages
from rkd.data.registry import DATASETS

__all__ = ["Selection", "GlyphDataset", "GlyphPretrain", "GlyphCUB", "GlyphCars", "GlyphSOP", "GlyphCIFAR100",
           "GlyphTinyImageNet", "GlyphOmniglot", "GlyphMiniImageNet", "GLYPH_DATASETS"]


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


class _RendersPerClass:
    """A glyph dataset whose classes have ``renders_per_class`` renders each, an option of
    its constructor (default: the class's ``default_renders``)."""

    default_renders: int = 30

    def __init__(self, root, split, transform=None, *, renders_per_class: int | None = None, **options):
        self._renders = _positive("renders_per_class",
                                  self.default_renders if renders_per_class is None else renders_per_class)
        super().__init__(root, split, transform, **options)

    @property
    def renders(self) -> int:
        return self._renders


class _FineGrained(_RendersPerClass, _ClassHalves):
    script: str = ""
    num_classes_default: int = 0

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
    default_renders = 6

    def __init__(self, root, split, transform=None, *, num_classes: int = 1000, **options):
        self.num_classes_default = _positive("num_classes", num_classes)
        super().__init__(root, split, transform, **options)


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
class GlyphMiniImageNet(_RendersPerClass, GlyphDataset):
    """miniImageNet's role: 100 Egyptian hieroglyphs spread over the script (Gardiner's
    signs: people, animals, plants, buildings, tools), dealt at random (a fixed
    permutation, seed 0) into 64 ``train``, 16 ``val`` and 20 ``test`` classes, as Ravi &
    Larochelle deal ImageNet classes; ``renders_per_class`` (60) renders each, one font."""

    name, stands_in_for = "glyphs_mini_imagenet", "miniImageNet"
    splits = ("train", "val", "test")
    default_renders = 60

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
