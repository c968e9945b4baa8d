"""The two real image datasets available on every machine of this project.

- ``fashion_mnist``: Fashion-MNIST read from its four idx files (Debian's
  ``dataset-fashion-mnist`` package installs them gzipped under
  ``/usr/share/datasets/fashion-mnist``).
- ``digits``: scikit-learn's bundled 8x8 digits (``sklearn.datasets.load_digits``).

Both stand in for the paper's datasets at CI scale and keep the protocol's shape,
chosen with the ``protocol`` option:

- ``"retrieval"`` (default) and ``"fewshot"``: class-disjoint splits over all images
  (Fashion-MNIST's train and t10k files pooled, 70,000 images): ``split="train"`` holds
  the first half of the classes (0-4), ``split="test"`` the second half (5-9), as the
  paper splits CUB-200-2011 and Cars196.
- ``"classification"``: all 10 classes in both splits. Fashion-MNIST: the train file
  and the t10k file. Digits: a stratified split, 2/3 train and 1/3 test, drawn with
  ``sklearn.model_selection.train_test_split(..., random_state=0)`` (1198 / 599 images).

Labels are remapped to 0..C-1 within the split; ``.original_targets`` keeps the
dataset's own labels (0..9). The images live in memory: ``.images`` is a uint8 tensor
``[N, 1, H, W]`` holding the raw pixel values (0..255 for Fashion-MNIST; 0..16, the
values scikit-learn ships, for digits) and ``.max_pixel_value`` the value that maps to
1.0. ``dataset[i]`` returns a float32 tensor ``[1, H, W]`` in [0, 1]
(``images[i] / max_pixel_value``), passed through ``transform`` when one is given;
:meth:`float_images` gives the same values for many indices at once.
"""
from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from rkd.data.common import contiguous_labels, layout_error, validate_split
from rkd.data.registry import DATASETS
from rkd.registry import Registry

__all__ = ["FashionMNIST", "Digits", "read_idx", "SPLIT_KINDS", "DEBIAN_FASHION_MNIST", "FASHION_MNIST_ENV"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "RKD_FASHION_MNIST"

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_TREE = """
fashion-mnist/                      (root; or a torchvision root holding FashionMNIST/raw/)
    train-images-idx3-ubyte[.gz]
    train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]
    t10k-labels-idx1-ubyte[.gz]
"""
FASHION_MNIST_SOURCE = (
    "on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (installs /usr/share/datasets/fashion-mnist); "
    "elsewhere download the four .gz files from https://github.com/zalandoresearch/fashion-mnist "
    f"(data/fashion) into one folder and pass it as root or set ${FASHION_MNIST_ENV}"
)

#: the ``protocol`` option of these datasets -> the kind of split it asks for: "class_disjoint"
#: (train and test hold different classes) or "official" (the dataset's own train / test files).
#: Unrelated to ``rkd.runs.protocol.PROTOCOLS``, the readings of the paper a run follows.
SPLIT_KINDS: Registry[str] = Registry("protocol")
SPLIT_KINDS.register("retrieval", "class_disjoint")
SPLIT_KINDS.register("fewshot", "class_disjoint")
SPLIT_KINDS.register("classification", "official")

SPLITS = ("train", "test")

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxFormatError(ValueError):
    """A file that is not a well-formed idx file."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an idx file (the MNIST format), gzipped or not; returns a read-only array.

    Header: two zero bytes, a dtype code, the number of dimensions, then one big-endian
    uint32 per dimension; the data follow in C order.
    """
    path = Path(path)
    stat = path.stat()
    return _read_idx_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, _mtime_ns: int, _size: int) -> np.ndarray:
    # keyed on mtime and size so an edited file is re-read; kept in memory only
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic: decide by content, not by the name
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise IdxFormatError(f"{path}: corrupt gzip data ({error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise IdxFormatError(f"{path}: not an idx file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise IdxFormatError(f"{path}: idx header truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise IdxFormatError(
            f"{path}: idx header announces shape {shape} ({expected} bytes of data) "
            f"but the file holds {len(raw) - header_size} bytes (truncated or corrupt)"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    array.flags.writeable = False
    return array


class _InMemoryImages(Dataset):
    """Shared behaviour of the in-memory datasets (see the module docstring)."""

    max_pixel_value: int = 255

    def __init__(self, images: np.ndarray, original_targets: np.ndarray, class_names: Sequence[str],
                 split: str, protocol: str, transform: Callable | None):
        targets, kept_classes = contiguous_labels(original_targets.tolist())
        self.split = split
        self.protocol = protocol
        self.transform = transform
        self.images = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).unsqueeze(1)  # own, writable
        self.targets = torch.tensor(targets, dtype=torch.long)
        self.original_targets = torch.from_numpy(np.asarray(original_targets, dtype=np.int64))
        self.classes = [class_names[c] for c in kept_classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.targets)

    def float_images(self, indices=None) -> torch.Tensor:
        """float32 ``[N, 1, H, W]`` in [0, 1] for ``indices`` (all when None), untransformed."""
        images = self.images if indices is None else self.images[indices]
        return images.float() / self.max_pixel_value

    def __getitem__(self, index: int):
        image = self.images[index].float() / self.max_pixel_value
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __getitems__(self, indices) -> list:
        """``[self[i] for i in indices]`` in one indexing (torch's batched protocol, which
        the loaders use): the same values (the division is exactly rounded either way), a
        batch of 64 glyphs in about half the time."""
        if self.transform is not None:
            return [self[i] for i in indices]
        where = torch.as_tensor(indices, dtype=torch.long)
        return list(zip(self.float_images(where), self.targets[where].tolist()))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, protocol={self.protocol!r}, "
                f"images={len(self)}, classes={self.num_classes})")


def _class_disjoint_mask(labels: np.ndarray, split: str) -> np.ndarray:
    """First half of the sorted classes for train, second half for test."""
    classes = np.unique(labels)
    half = len(classes) // 2
    chosen = classes[:half] if split == "train" else classes[half:]
    return np.isin(labels, chosen)


def _find_fashion_mnist_folder(root: Path) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
        if all(_idx_path(folder, name) is not None for pair in FASHION_MNIST_FILES.values() for name in pair):
            return folder
    return None


def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def default_fashion_mnist_root() -> Path:
    """``$RKD_FASHION_MNIST`` when set, else Debian's install path."""
    return Path(os.environ.get(FASHION_MNIST_ENV) or DEBIAN_FASHION_MNIST)


@DATASETS.register("fashion_mnist")
class FashionMNIST(_InMemoryImages):
    """Fashion-MNIST (28x28 grayscale, 10 classes); see the module docstring.

    ``root``: the folder holding the four idx files (``.gz`` or not), or a torchvision
    root holding ``FashionMNIST/raw/``; ``None`` means ``$RKD_FASHION_MNIST``, else
    ``/usr/share/datasets/fashion-mnist``.
    """

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None,
                 protocol: str = "retrieval"):
        validate_split("fashion_mnist", split, SPLITS)
        kind = SPLIT_KINDS.get(protocol)
        root_path = default_fashion_mnist_root() if root is None else Path(root).expanduser()
        folder = _find_fashion_mnist_folder(root_path)
        if folder is None:
            problem = ("the root folder does not exist" if not root_path.exists()
                       else "the four idx files were not all found")
            raise layout_error("fashion_mnist", root_path, problem, FASHION_MNIST_TREE, FASHION_MNIST_SOURCE)
        self.root = folder
        parts = {part: self._read_part(folder, part) for part in FASHION_MNIST_FILES}
        if kind == "official":
            images, labels = parts["train" if split == "train" else "t10k"]
        else:
            images = np.concatenate([parts["train"][0], parts["t10k"][0]])
            labels = np.concatenate([parts["train"][1], parts["t10k"][1]])
            keep = _class_disjoint_mask(labels, split)
            images, labels = images[keep], labels[keep]
        super().__init__(images, labels, FASHION_MNIST_CLASSES, split, protocol, transform)

    @staticmethod
    def _read_part(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
        image_name, label_name = FASHION_MNIST_FILES[part]
        image_path, label_path = _idx_path(folder, image_name), _idx_path(folder, label_name)
        try:
            images, labels = read_idx(image_path), read_idx(label_path)
        except IdxFormatError as error:
            raise layout_error("fashion_mnist", folder, f"malformed idx file: {error}",
                               FASHION_MNIST_TREE, FASHION_MNIST_SOURCE) from error
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise layout_error("fashion_mnist", folder,
                               f"{image_path.name} holds {images.dtype} {images.shape}, expected uint8 [N, 28, 28]",
                               FASHION_MNIST_TREE, FASHION_MNIST_SOURCE)
        if labels.ndim != 1 or len(labels) != len(images):
            raise layout_error("fashion_mnist", folder,
                               f"{label_path.name} holds {labels.shape} labels for {len(images)} images",
                               FASHION_MNIST_TREE, FASHION_MNIST_SOURCE)
        if len(labels) and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise layout_error("fashion_mnist", folder, f"{label_path.name} holds labels above 9",
                               FASHION_MNIST_TREE, FASHION_MNIST_SOURCE)
        return images, labels.astype(np.int64)


DIGITS_CLASSIFICATION_SEED = 0
DIGITS_TEST_FRACTION = 1 / 3


@DATASETS.register("digits")
class Digits(_InMemoryImages):
    """scikit-learn's 8x8 digits (1797 images, 10 classes); ``root`` is ignored (may be
    None). ``.images`` keeps scikit-learn's raw values 0..16 (``max_pixel_value = 16``),
    so ``dataset[i]`` is exactly ``values / 16``. See the module docstring for the
    protocols; the classification split is stratified with seed 0."""

    max_pixel_value = 16

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None,
                 protocol: str = "retrieval"):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        validate_split("digits", split, SPLITS)
        kind = SPLIT_KINDS.get(protocol)
        bunch = load_digits()
        images = bunch.images.astype(np.uint8)  # integer values 0..16 stored as float64
        labels = bunch.target.astype(np.int64)
        if kind == "official":
            train_index, test_index = train_test_split(
                np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION, stratify=labels,
                random_state=DIGITS_CLASSIFICATION_SEED,
            )
            keep = np.sort(train_index if split == "train" else test_index)
        else:
            keep = np.flatnonzero(_class_disjoint_mask(labels, split))
        self.root = None
        super().__init__(images[keep], labels[keep], [str(d) for d in range(10)], split, protocol, transform)
