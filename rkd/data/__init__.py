"""Datasets, samplers and transforms.

``get_dataset(name, root, split, transform=None, **options)`` builds any registered
dataset (``dataset_names()`` lists them); every one has ``.targets`` (labels 0..C-1
within the split), ``.classes``, ``.num_classes`` and returns ``(image, target)``.
Nothing is downloaded: a missing or malformed root raises :class:`DatasetLayoutError`
(a ``FileNotFoundError``) that shows the expected layout and where to get the data.
"""
from rkd.data import classification, fewshot, offline, retrieval  # noqa: F401  (register the readers)
from rkd.data.common import DatasetLayoutError, ImageListDataset, ImageReadError
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
    "MPerClassSampler",
    "EpisodeSampler",
    "split_episode",
    "episode_targets",
    "TRANSFORMS",
    "get_transform",
    "transform_names",
]
