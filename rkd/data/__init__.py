"""Datasets, samplers and transforms, and the check of a data root before training.

``get_dataset(name, root, split, transform=None, **options)`` builds any registered
dataset (``dataset_names()`` lists them); every one has ``.targets`` (labels 0..C-1
within the split), ``.classes``, ``.num_classes`` and returns ``(image, target)``.
Nothing is downloaded: a missing or malformed root raises :class:`DatasetLayoutError`
(a ``FileNotFoundError``) that shows the expected layout and where to get the data.

``check_data_root(data_root, names)`` checks the paper's datasets under a data root
against their official releases (layout, counts, every image decodes) and returns a
:class:`DatasetReport` per dataset; ``prepare_archive(name, archive, data_root)``
extracts a downloaded official archive into place after verifying its published
checksum (:data:`RELEASES` lists the archives and checksums). Both are also
``python -m rkd.data check|prepare``.

The ``glyphs_*`` datasets (:mod:`rkd.data.glyphs`) are stand-ins for every dataset of the
paper, rendered from Debian's Noto fonts and cached; ``GLYPH_DATASETS`` lists them and
``sample_grid`` draws a few of their images.
"""
from rkd.data import classification, fewshot, glyphs, offline, retrieval  # noqa: F401  (register the readers)
from rkd.data.check import DataNotReadyError, DatasetReport, check_data_root, check_dataset
from rkd.data.common import DatasetLayoutError, ImageListDataset, ImageReadError
from rkd.data.glyphs import GLYPH_DATASETS, GlyphFontsMissingError, sample_grid
from rkd.data.prepare import ArchiveError, prepare_archive
from rkd.data.registry import DATASETS, dataset_names, get_dataset
from rkd.data.releases import OFFICIAL_COUNTS, RELEASES, ReleaseCounts
from rkd.data.samplers import EpisodeSampler, MPerClassSampler
from rkd.data.transforms import TRANSFORMS, get_transform, transform_names

__all__ = [
    "DATASETS",
    "get_dataset",
    "dataset_names",
    "DatasetLayoutError",
    "ImageReadError",
    "ImageListDataset",
    "check_data_root",
    "DataNotReadyError",
    "check_dataset",
    "DatasetReport",
    "prepare_archive",
    "ArchiveError",
    "RELEASES",
    "OFFICIAL_COUNTS",
    "ReleaseCounts",
    "GLYPH_DATASETS",
    "GlyphFontsMissingError",
    "sample_grid",
    "MPerClassSampler",
    "EpisodeSampler",
    "TRANSFORMS",
    "get_transform",
    "transform_names",
]
