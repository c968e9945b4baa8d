"""The dataset registry and :func:`get_dataset`, the one way the package builds a dataset."""
from __future__ import annotations

import os
from collections.abc import Callable

from torch.utils.data import Dataset

from rkd.registry import Registry

__all__ = ["DATASETS", "get_dataset", "dataset_names"]

#: name -> dataset class; every class takes ``(root, split, transform=None, **options)``.
DATASETS: Registry = Registry("dataset")


def get_dataset(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    transform: Callable | None = None,
    **options,
) -> Dataset:
    """Build dataset ``name`` (see :func:`dataset_names`) for ``split`` from ``root``.

    Every dataset returned has ``.targets`` (labels 0..C-1 within the split),
    ``.classes`` and ``.num_classes``; ``dataset[i]`` is ``(image, target)``.
    ``options`` are passed to the dataset class (``protocol=`` for the offline
    datasets, ``split_file=`` for Omniglot, ...).
    """
    import rkd.data  # noqa: F401  (registers every reader; a no-op once imported)

    return DATASETS.get(name)(root, split, transform=transform, **options)


def dataset_names() -> list[str]:
    """The names :func:`get_dataset` accepts, sorted (the paper's datasets, their stand-ins)."""
    import rkd.data  # noqa: F401  (registers every reader)

    return DATASETS.names()
