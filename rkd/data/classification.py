"""Readers of the classification datasets (section 4.2, Table 4; CIFAR-100 also in Figure 3).

Both keep the official labels (every class appears in both splits, so they are already
0..C-1 within each split). ``dataset[i]`` is ``(PIL RGB image, target)``, the image
passed through ``transform`` when one is given.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rkd.data.common import (
    ImageListDataset,
    LabelledDataset,
    layout_error,
    require_files,
    resolve_root,
    validate_split,
)
from rkd.data.registry import DATASETS

__all__ = ["CIFAR100", "TinyImageNet"]

SPLITS = ("train", "test")

CIFAR_TREE = """
<root>/                             (root, or the cifar-100-python folder itself)
    cifar-100-python/
        train                       pickled dict: data (uint8 [50000, 3072]), fine_labels
        test                        pickled dict: data (uint8 [10000, 3072]), fine_labels
        meta                        pickled dict: fine_label_names
"""
CIFAR_SOURCE = ("cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
                "(or torchvision.datasets.CIFAR100(root, download=True) on a machine with internet)")


@DATASETS.register("cifar100")
class CIFAR100(LabelledDataset):
    """CIFAR-100 (32x32 RGB, 100 fine classes; 50,000 train / 10,000 test).

    Reads the python pickles that torchvision's ``CIFAR100`` reads, in the same way,
    but checks the layout itself so a missing root fails with the expected tree and a
    small test tree can be read. ``verify_checksums=True`` (default) compares the
    files with the MD5 sums torchvision publishes for the official archive.
    ``.data`` is the uint8 array ``[N, 32, 32, 3]``; ``.coarse_targets`` the 20
    super-class labels.
    """

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None,
                 verify_checksums: bool = True):
        validate_split("cifar100", split, SPLITS)
        folder = resolve_root("cifar100", root, "meta", "cifar-100-python", CIFAR_TREE, CIFAR_SOURCE)
        require_files("cifar100", folder, ["train", "test", "meta"], CIFAR_TREE, CIFAR_SOURCE)
        if verify_checksums:
            self._verify(folder, split)
        batch = self._unpickle(folder / split)
        meta = self._unpickle(folder / "meta")
        try:
            data = np.asarray(batch["data"], dtype=np.uint8)
            fine, coarse = batch["fine_labels"], batch.get("coarse_labels")
            names = list(meta["fine_label_names"])
        except KeyError as error:
            raise layout_error("cifar100", folder, f"pickle lacks the key {error}", CIFAR_TREE, CIFAR_SOURCE) from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(fine) != len(data):
            raise layout_error("cifar100", folder, f"{split}: data has shape {data.shape} for {len(fine)} labels, "
                               "expected [N, 3072]", CIFAR_TREE, CIFAR_SOURCE)
        self.root, self.split, self.transform = folder, split, transform
        self.data = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # HWC, as PIL wants
        self.targets = torch.as_tensor(np.asarray(fine, dtype=np.int64))
        self.coarse_targets = None if coarse is None else torch.as_tensor(np.asarray(coarse, dtype=np.int64))
        self.classes = names

    @staticmethod
    def _unpickle(path: Path) -> dict:
        try:
            with open(path, "rb") as handle:
                # the official pickles were written by Python 2; latin1 maps their byte strings
                return pickle.load(handle, encoding="latin1")
        except Exception as error:  # unpickling a damaged file raises many types
            raise layout_error("cifar100", path.parent, f"cannot unpickle {path.name}: {error}",
                               CIFAR_TREE, CIFAR_SOURCE) from error

    @staticmethod
    def _verify(folder: Path, split: str) -> None:
        from torchvision.datasets import CIFAR100 as TorchvisionCIFAR100
        from torchvision.datasets.utils import check_integrity

        official = dict(TorchvisionCIFAR100.train_list + TorchvisionCIFAR100.test_list)
        official[TorchvisionCIFAR100.meta["filename"]] = TorchvisionCIFAR100.meta["md5"]
        for name in (split, "meta"):
            if not check_integrity(str(folder / name), official[name]):
                raise layout_error("cifar100", folder, f"{name} does not match the official MD5 {official[name]} "
                                   "(corrupt or not the official file; pass verify_checksums=False to skip)",
                                   CIFAR_TREE, CIFAR_SOURCE)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __repr__(self) -> str:
        return f"CIFAR100(split={self.split!r}, images={len(self)}, classes={self.num_classes})"


TINY_TREE = """
tiny-imagenet-200/                  (root, or its parent)
    wnids.txt                       200 WordNet ids, one a line
    words.txt                       (optional) <wnid>\\t<names>
    train/<wnid>/images/<wnid>_0.JPEG ...
    val/val_annotations.txt         <file>\\t<wnid>\\t<x>\\t<y>\\t<w>\\t<h>
    val/images/val_0.JPEG ...
"""
TINY_SOURCE = "tiny-imagenet-200.zip from http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@DATASETS.register("tiny_imagenet")
class TinyImageNet(ImageListDataset):
    """Tiny ImageNet (64x64 RGB, 200 classes): ``split="train"`` is the 100,000 training
    images, ``split="test"`` the 10,000 labelled validation images (the official test
    images have no labels). Labels index the sorted WordNet ids; ``.classes`` are the
    wnids and ``.class_names`` the words from ``words.txt`` when present."""

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None):
        validate_split("tiny_imagenet", split, SPLITS)
        folder = resolve_root("tiny_imagenet", root, "wnids.txt", "tiny-imagenet-200", TINY_TREE, TINY_SOURCE)
        require_files("tiny_imagenet", folder, ["train", "val/images", "val/val_annotations.txt"],
                      TINY_TREE, TINY_SOURCE)
        wnids = sorted({line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()})
        index = {wnid: i for i, wnid in enumerate(wnids)}
        paths: list[Path] = []
        targets: list[int] = []
        if split == "train":
            for wnid in wnids:
                image_folder = folder / "train" / wnid / "images"
                if not image_folder.is_dir():
                    raise layout_error("tiny_imagenet", folder, f"missing train/{wnid}/images/",
                                       TINY_TREE, TINY_SOURCE)
                files = sorted(p for p in image_folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
                paths += files
                targets += [index[wnid]] * len(files)
        else:
            annotations = folder / "val" / "val_annotations.txt"
            for number, line in enumerate(annotations.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < 2 or fields[1] not in index:
                    raise layout_error("tiny_imagenet", folder, f"val_annotations.txt line {number} is not "
                                       f"'<file>\\t<wnid in wnids.txt>...': {line!r}", TINY_TREE, TINY_SOURCE)
                paths.append(folder / "val" / "images" / fields[0])
                targets.append(index[fields[1]])
        words = {}
        if (folder / "words.txt").exists():
            for line in (folder / "words.txt").read_text().splitlines():
                wnid, _, name = line.partition("\t")
                words[wnid] = name
        self.root, self.split = folder, split
        self.class_names = [words.get(wnid, wnid) for wnid in wnids]
        super().__init__(paths, targets, wnids, transform)
