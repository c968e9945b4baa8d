"""Pieces every dataset reader shares: the layout error, split validation, root
resolution, label remapping and a lazily loading image-list dataset.

Readers never download: each error for a missing or malformed root shows the expected
tree and says where the official archive comes from.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

__all__ = [
    "DatasetLayoutError",
    "ImageReadError",
    "layout_error",
    "validate_split",
    "resolve_root",
    "require_files",
    "contiguous_labels",
    "LabelledDataset",
    "ImageListDataset",
]


class DatasetLayoutError(FileNotFoundError):
    """A dataset root that is missing or does not have the official layout.

    Its message names the problem, shows the expected tree and says where the data
    comes from.
    """


class ImageReadError(OSError):
    """An image file that cannot be opened or decoded (missing, corrupt or truncated).
    Its message names the file."""


def layout_error(dataset: str, root: object, problem: str, tree: str, source: str) -> DatasetLayoutError:
    """Build the error raised for a missing or malformed dataset root."""
    tree = "\n".join("    " + line for line in tree.strip("\n").splitlines())
    return DatasetLayoutError(
        f"{dataset}: {problem} (root={str(root)!r}).\n"
        f"Expected layout (root is the top folder shown, or its parent where noted):\n{tree}\n"
        f"Get the data: {source}"
    )


def validate_split(dataset: str, split: object, valid: Iterable[str]) -> str:
    """Return ``split`` if it is one of ``valid``; otherwise raise a ValueError listing them."""
    valid = tuple(valid)
    if split not in valid:
        raise ValueError(f"{dataset}: unknown split {split!r}; valid splits: {', '.join(valid)}")
    return split  # type: ignore[return-value]


def resolve_root(
    dataset: str,
    root: str | os.PathLike | None,
    marker: str,
    top_folder: str | None,
    tree: str,
    source: str,
) -> Path:
    """The folder holding ``marker`` (a file or folder name): ``root`` itself or, when
    ``top_folder`` is given, ``root/top_folder`` (so the parent of the official top
    folder is accepted too)."""
    if root is None:
        raise layout_error(dataset, root, "no root given", tree, source)
    root_path = Path(root).expanduser()
    candidates = [root_path] + ([root_path / top_folder] if top_folder else [])
    for candidate in candidates:
        if (candidate / marker).exists():
            return candidate
    if not root_path.exists():
        raise layout_error(dataset, root, "the root folder does not exist", tree, source)
    where = " or ".join(str(c / marker) for c in candidates)
    raise layout_error(dataset, root, f"{marker!r} not found (looked for {where})", tree, source)


def require_files(dataset: str, root: Path, names: Sequence[str], tree: str, source: str) -> None:
    """Raise a layout error naming every entry of ``names`` missing under ``root``."""
    missing = [name for name in names if not (root / name).exists()]
    if missing:
        raise layout_error(dataset, root, f"missing {', '.join(missing)}", tree, source)


def contiguous_labels(raw_labels: Sequence[Any]) -> tuple[list[int], list[Any]]:
    """Map raw class identifiers to 0..C-1 in sorted order of the identifiers.

    Returns ``(targets, sorted_identifiers)`` where ``sorted_identifiers[targets[i]]``
    is ``raw_labels[i]``.
    """
    identifiers = sorted(set(raw_labels))
    index = {identifier: i for i, identifier in enumerate(identifiers)}
    return [index[label] for label in raw_labels], identifiers


def read_image(path: Path, mode: str) -> Image.Image:
    """Open ``path`` with PIL, decode it fully and convert it to ``mode``.

    Decoding happens here (not lazily inside a transform) so that a corrupt or
    truncated file fails with an error that names it.
    """
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, ValueError, SyntaxError) as error:  # PIL raises all three for bad files
        raise ImageReadError(
            f"cannot read image {str(path)!r}: {error}. The file is missing, corrupt or truncated: extract it "
            f"again from the dataset's archive (the dataset's .verify() lists every unreadable file)"
        ) from error


class LabelledDataset(Dataset):
    """A dataset of ``targets`` (one int label in 0..C-1 per item) over ``classes``
    (their names): its length and ``num_classes`` follow from them."""

    classes: list[str]
    targets: Any

    @property
    def num_classes(self) -> int:
        """The number of classes C (``len(classes)``); targets lie in 0..C-1."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.targets)


class ImageListDataset(LabelledDataset):
    """Images listed by path, read lazily with PIL.

    ``__getitem__(i)`` returns ``(image, target)``: the PIL image in ``image_mode``
    (after ``transform`` when one is given) and the int label in 0..C-1. A file that
    cannot be read raises :class:`ImageReadError` naming it, when it is first loaded;
    :meth:`verify` reads every file up front and returns the unreadable ones.
    """

    image_mode = "RGB"

    def __init__(
        self,
        paths: Sequence[Path],
        targets: Sequence[int],
        classes: Sequence[str],
        transform: Callable | None = None,
    ):
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets")
        self.paths = [Path(p) for p in paths]
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.int64))
        self.classes = list(classes)
        self.transform = transform
        if len(self.targets) and (int(self.targets.min()) < 0 or int(self.targets.max()) >= len(self.classes)):
            raise ValueError(f"targets must lie in 0..{len(self.classes) - 1}")

    def load_image(self, index: int) -> Image.Image:
        """The untransformed PIL image at ``index``."""
        return read_image(self.paths[index], self.image_mode)

    def __getitem__(self, index: int):
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def verify(self) -> list[Path]:
        """Read every image file once; return the ones that could not be read (empty if all can)."""
        unreadable, seen = [], set()
        for path in self.paths:
            if path in seen:  # Omniglot lists each file once per rotation
                continue
            seen.add(path)
            try:
                read_image(path, self.image_mode)
            except ImageReadError:
                unreadable.append(path)
        return unreadable

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={getattr(self, 'split', None)!r}, images={len(self)}, "
                f"classes={self.num_classes})")
