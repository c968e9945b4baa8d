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

The package has two halves. The rasteriser draws characters: :mod:`~rkd.data.glyphs.scripts`
(which Noto fonts draw which script), :mod:`~rkd.data.glyphs.fonts` (FreeType bitmaps and
each script's usable characters), :mod:`~rkd.data.glyphs.raster` (the augmentation: affine
maps, stroke widths, ink, noise, in integer arithmetic) and :mod:`~rkd.data.glyphs.corpus`
(sets of renders, cached keyed on everything that could change a pixel). The dataset
definitions say what is drawn for whom: :mod:`~rkd.data.glyphs.roles` (which scripts
play which paper dataset) and :mod:`~rkd.data.glyphs.datasets` (the registered datasets
and their splits). :func:`sample_grid` (:mod:`~rkd.data.glyphs.pictures`) draws a few
images of any of them.
"""
from rkd.data.glyphs.corpus import RENDER_FORMAT, CharacterGroup, Corpus, CorpusSpec, corpus_config, render_corpus
from rkd.data.glyphs.datasets import (GLYPH_DATASETS, GlyphCars, GlyphCIFAR100, GlyphCUB, GlyphDataset,
                                      GlyphMiniImageNet, GlyphOmniglot, GlyphPretrain, GlyphSOP, GlyphTinyImageNet,
                                      Selection)
from rkd.data.glyphs.fonts import (DEBIAN_NOTO_DIR, FONTS_ENV, FONTS_PACKAGE, GlyphFontsMissingError, default_fonts_dir,
                                   script_characters)
from rkd.data.glyphs.pictures import sample_grid
from rkd.data.glyphs.raster import Augmentation, render_character
from rkd.data.glyphs.roles import PRETRAIN_AUGMENTATION
from rkd.data.glyphs.scripts import SCRIPTS, Script

__all__ = [
    # the rasteriser
    "Script", "SCRIPTS", "FONTS_ENV", "FONTS_PACKAGE", "DEBIAN_NOTO_DIR", "default_fonts_dir", "GlyphFontsMissingError",
    "script_characters", "Augmentation", "render_character", "CharacterGroup", "CorpusSpec", "Corpus",
    "RENDER_FORMAT", "corpus_config", "render_corpus",
    # the dataset definitions
    "PRETRAIN_AUGMENTATION", "Selection", "GlyphDataset", "GlyphPretrain", "GlyphCUB", "GlyphCars", "GlyphSOP",
    "GlyphCIFAR100", "GlyphTinyImageNet", "GlyphOmniglot", "GlyphMiniImageNet", "GLYPH_DATASETS", "sample_grid",
]
