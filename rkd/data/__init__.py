"""Datasets, samplers and transforms.

``get_dataset(name, root, split, transform=None, **options)`` builds any registered
dataset (``dataset_names()`` lists them); every one has ``.targets`` (labels 0..C-1
within the split), ``.classes``, ``.num_classes`` and returns ``(image, target)``.
Nothing is downloaded: a missing or malformed root raises :class:`DatasetLayoutError`
(a ``FileNotFoundError``) that shows the expected layout and where to get the data.

The ``glyphs_*`` datasets (:mod:`rkd.data.glyphs`) are stand-ins for every dataset of the
paper, rendered from Debian's Noto fonts and cached; ``GLYPH_DATASETS`` lists them and
``sample_grid`` draws a few of their images.
"""
from rkd.data import classification, fewshot, glyphs, offline, retrieval  # noqa: F401  (register the readers)
from rkd.data.common import DatasetLayoutError, ImageListDataset, ImageReadError
from rkd.data.glyphs import GLYPH_DATASETS, GlyphFontsMissingError, sample_grid
from rkd.data.registry import DATASETS, dataset_names, get_dataset
from rkd.data.samplers import EpisodeSampler, MPerClassSampler, episode_targets, split_episode
from rkd.data.transforms import TRANSFORMS, get_transform, transform_names

__all__ = [
    "DATASETS",
    "get_dataset",
    "dataset_names",
    "DatasetLayoutError",
    "ImageReadError",
    "ImageListDataset",
    "GLYPH_DATASETS",
    "GlyphFontsMissingError",
    "sample_grid",
    "MPerClassSampler",
    "EpisodeSampler",
    "split_episode",
    "episode_targets",
    "TRANSFORMS",
    "get_transform",
    "transform_names",
]
