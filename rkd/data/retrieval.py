"""Readers of the metric-learning datasets (section 4.1 and Figure 3 of the paper).

Each reads the official release as its archives extract; nothing is downloaded.
Retrieval splits are class-disjoint: CUB-200-2011 trains on classes 1-100 and tests on
101-200, Cars196 on 1-98 and 99-196 (stated as "the first half of the classes, sorted by
class id", which is exactly that on the official releases), Stanford Online Products
follows ``Ebay_train.txt`` / ``Ebay_test.txt`` and Stanford Dogs its
``train_list.mat`` / ``test_list.mat``. Labels are remapped to 0..C-1 within the split
(sorted by the official class id); ``.class_ids`` keeps the official ids.

Images are read lazily with PIL and converted to RGB; ``dataset[i]`` is ``(image,
target)`` with the PIL image passed through ``transform``. A corrupt file raises
:class:`~rkd.data.common.ImageReadError` naming it when it is loaded; ``verify()``
checks them all at once. Bounding boxes are not used (the paper does not crop).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rkd.data.common import (ImageListDataset, contiguous_labels, layout_error, require_files, resolve_root,
                             validate_split)
from rkd.data.registry import DATASETS

__all__ = ["CUB200", "Cars196", "StanfordOnlineProducts", "StanfordDogs"]

SPLITS = ("train", "test")


def _first_half_classes(class_ids, split: str) -> set:
    ordered = sorted(set(class_ids))
    half = len(ordered) // 2
    return set(ordered[:half] if split == "train" else ordered[half:])


def _read_table(dataset: str, path: Path, columns: int, tree: str, source: str, skip_header: bool = False):
    """Whitespace-separated rows of at least ``columns`` fields (extra fields stay joined in the last)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for number, line in enumerate(lines[1:] if skip_header else lines, start=2 if skip_header else 1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=columns - 1)
        if len(fields) != columns:
            raise layout_error(dataset, path.parent, f"{path.name} line {number} has {len(fields)} fields, "
                               f"expected {columns}: {line!r}", tree, source)
        rows.append(fields)
    return rows


def _as_int(dataset: str, value: str, path: Path, tree: str, source: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise layout_error(dataset, path.parent, f"{path.name}: {value!r} is not an integer", tree, source) from None


CUB_TREE = """
CUB_200_2011/                       (root, or its parent)
    images.txt                      <image_id> <class folder>/<file>.jpg
    image_class_labels.txt          <image_id> <class_id 1..200>
    classes.txt                     <class_id> <class folder>
    images/
        001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg
        ...
"""
CUB_SOURCE = ("CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ "
              "(extract it; root is the CUB_200_2011 folder)")


@DATASETS.register("cub200")
class CUB200(ImageListDataset):
    """CUB-200-2011 for retrieval: classes 1-100 train, 101-200 test (11,788 images in all)."""

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None):
        validate_split("cub200", split, SPLITS)
        folder = resolve_root("cub200", root, "images.txt", "CUB_200_2011", CUB_TREE, CUB_SOURCE)
        require_files("cub200", folder, ["images.txt", "image_class_labels.txt", "classes.txt", "images"],
                      CUB_TREE, CUB_SOURCE)
        def table(name: str) -> list[list[str]]:
            return _read_table("cub200", folder / name, 2, CUB_TREE, CUB_SOURCE)

        def integer(value: str, name: str) -> int:
            return _as_int("cub200", value, folder / name, CUB_TREE, CUB_SOURCE)

        images = table("images.txt")
        class_names = {integer(cid, "classes.txt"): name for cid, name in table("classes.txt")}
        label_of = {image_id: integer(cid, "image_class_labels.txt")
                    for image_id, cid in table("image_class_labels.txt")}
        missing = [image_id for image_id, _ in images if image_id not in label_of]
        if missing:
            raise layout_error("cub200", folder, f"image_class_labels.txt has no label for image ids "
                               f"{', '.join(missing[:5])}", CUB_TREE, CUB_SOURCE)
        unknown = sorted({label_of[i] for i, _ in images} - set(class_names))
        if unknown:
            raise layout_error("cub200", folder, f"class ids {unknown[:5]} are not in classes.txt",
                               CUB_TREE, CUB_SOURCE)
        chosen = _first_half_classes(class_names, split)
        kept = [(relative, label_of[image_id]) for image_id, relative in images if label_of[image_id] in chosen]
        targets, class_ids = contiguous_labels([cid for _, cid in kept])
        self.root, self.split, self.class_ids = folder, split, class_ids
        super().__init__([folder / "images" / relative for relative, _ in kept], targets,
                         [class_names[cid] for cid in class_ids], transform)


CARS_TREE = """
<root>/                             (the folder you extracted car_ims.tgz into)
    cars_annos.mat                  struct array `annotations` (relative_im_path, bbox_x1, bbox_y1,
                                    bbox_x2, bbox_y2, class 1..196, test) and `class_names`
    car_ims/
        000001.jpg
        ...
"""
CARS_SOURCE = ("car_ims.tgz and cars_annos.mat (the all-images release of the Stanford Cars dataset, "
               "Krause et al. 2013; https://ai.stanford.edu/~jkrause/cars/car_dataset.html, mirrored on Kaggle "
               "and Hugging Face as 'stanford cars')")


def _loadmat(dataset: str, path: Path, tree: str, source: str) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path), squeeze_me=True)
    except Exception as error:  # scipy raises several types (ValueError, MatReadError, TypeError)
        raise layout_error(dataset, path.parent, f"cannot read {path.name}: {error}", tree, source) from error


@DATASETS.register("cars196")
class Cars196(ImageListDataset):
    """Cars196 for retrieval: classes 1-98 train, 99-196 test, all 16,185 images
    (the ``test`` flag of ``cars_annos.mat``, a classification split, is ignored)."""

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None):
        validate_split("cars196", split, SPLITS)
        folder = resolve_root("cars196", root, "cars_annos.mat", None, CARS_TREE, CARS_SOURCE)
        require_files("cars196", folder, ["car_ims"], CARS_TREE, CARS_SOURCE)
        mat = _loadmat("cars196", folder / "cars_annos.mat", CARS_TREE, CARS_SOURCE)
        annotations = mat.get("annotations")
        fields = getattr(getattr(annotations, "dtype", None), "names", None) or ()
        if "relative_im_path" not in fields or "class" not in fields:
            raise layout_error("cars196", folder, "cars_annos.mat has no struct array `annotations` with fields "
                               "relative_im_path and class", CARS_TREE, CARS_SOURCE)
        annotations = np.atleast_1d(annotations)
        paths = [str(p) for p in annotations["relative_im_path"]]
        class_ids = [int(c) for c in annotations["class"]]
        names = mat.get("class_names")
        names = [str(n) for n in np.atleast_1d(names)] if names is not None else []
        chosen = _first_half_classes(class_ids, split)
        kept = [(path, cid) for path, cid in zip(paths, class_ids) if cid in chosen]
        targets, ids = contiguous_labels([cid for _, cid in kept])
        self.root, self.split, self.class_ids = folder, split, ids
        super().__init__([folder / path for path, _ in kept], targets,
                         [names[cid - 1] if 0 < cid <= len(names) else str(cid) for cid in ids], transform)


SOP_TREE = """
Stanford_Online_Products/           (root, or its parent)
    Ebay_train.txt                  header `image_id class_id super_class_id path`
    Ebay_test.txt
    bicycle_final/111085122871_0.JPG
    ...
"""
SOP_SOURCE = ("Stanford_Online_Products.zip from https://cvgl.stanford.edu/projects/lifted_struct/ "
              "(extract it; root is the Stanford_Online_Products folder)")


@DATASETS.register("sop")
class StanfordOnlineProducts(ImageListDataset):
    """Stanford Online Products: the split is what ``Ebay_train.txt`` / ``Ebay_test.txt`` say
    (11,318 classes / 59,551 images train, 11,316 / 60,502 test). ``.super_targets`` holds
    the super-class ids (1..12)."""

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None):
        validate_split("sop", split, SPLITS)
        list_name = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}[split]
        folder = resolve_root("sop", root, list_name, "Stanford_Online_Products", SOP_TREE, SOP_SOURCE)
        list_path = folder / list_name
        with open(list_path, encoding="utf-8") as handle:
            header = handle.readline().split()
        if header != ["image_id", "class_id", "super_class_id", "path"]:
            raise layout_error("sop", folder, f"{list_name} header is {header}, expected "
                               "['image_id', 'class_id', 'super_class_id', 'path']", SOP_TREE, SOP_SOURCE)
        rows = _read_table("sop", list_path, 4, SOP_TREE, SOP_SOURCE, skip_header=True)
        class_ids = [_as_int("sop", r[1], list_path, SOP_TREE, SOP_SOURCE) for r in rows]
        targets, ids = contiguous_labels(class_ids)
        self.root, self.split, self.class_ids = folder, split, ids
        self.super_targets = [_as_int("sop", r[2], list_path, SOP_TREE, SOP_SOURCE) for r in rows]
        super().__init__([folder / r[3] for r in rows], targets, [str(cid) for cid in ids], transform)


DOGS_TREE = """
<root>/                             (the folder you extracted images.tar and lists.tar into)
    train_list.mat                  file_list (cell of 'n02085620-Chihuahua/n02085620_5927.jpg'), labels 1..120
    test_list.mat
    Images/
        n02085620-Chihuahua/n02085620_5927.jpg
        ...
"""
DOGS_SOURCE = "images.tar and lists.tar from http://vision.stanford.edu/aditya86/ImageNetDogs/"


@DATASETS.register("stanford_dogs")
class StanfordDogs(ImageListDataset):
    """Stanford Dogs (120 breeds; 12,000 train / 8,580 test images) with the official lists.
    Class names are the breed folders (``n02085620-Chihuahua``)."""

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None):
        validate_split("stanford_dogs", split, SPLITS)
        list_name = f"{split}_list.mat"
        folder = resolve_root("stanford_dogs", root, list_name, None, DOGS_TREE, DOGS_SOURCE)
        require_files("stanford_dogs", folder, ["Images"], DOGS_TREE, DOGS_SOURCE)
        mat = _loadmat("stanford_dogs", folder / list_name, DOGS_TREE, DOGS_SOURCE)
        if "file_list" not in mat or "labels" not in mat:
            raise layout_error("stanford_dogs", folder, f"{list_name} lacks the variables file_list and labels",
                               DOGS_TREE, DOGS_SOURCE)
        files = [str(f) for f in np.atleast_1d(mat["file_list"])]
        labels = [int(label) for label in np.atleast_1d(mat["labels"])]
        if len(files) != len(labels):
            raise layout_error("stanford_dogs", folder, f"{list_name} has {len(files)} files but "
                               f"{len(labels)} labels", DOGS_TREE, DOGS_SOURCE)
        breed_of = {}
        for file, label in zip(files, labels):
            breed = file.replace("\\", "/").split("/")[0]
            if breed_of.setdefault(label, breed) != breed:
                raise layout_error("stanford_dogs", folder, f"{list_name}: label {label} names two folders, "
                                   f"{breed_of[label]!r} and {breed!r}", DOGS_TREE, DOGS_SOURCE)
        targets, ids = contiguous_labels(labels)
        self.root, self.split, self.class_ids = folder, split, ids
        super().__init__([folder / "Images" / f for f in files], targets, [breed_of[i] for i in ids], transform)
