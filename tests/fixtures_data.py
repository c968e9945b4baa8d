"""Tiny dataset trees in exactly the official layouts, for tests and dry runs.

Each ``make_<dataset>_tree(root, ...)`` writes a few classes of a few small images under
``root`` (a ``pathlib.Path``, e.g. pytest's ``tmp_path``) and returns the path to pass
as ``root`` to :func:`rkd.data.get_dataset`. Images are random but seeded, so two calls
write identical files. Nothing here is real data.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "make_fashion_mnist_tree",
    "make_cub200_tree",
    "make_cars196_tree",
    "make_sop_tree",
    "make_stanford_dogs_tree",
    "make_cifar100_tree",
    "make_tiny_imagenet_tree",
    "make_omniglot_tree",
    "make_mini_imagenet_tree",
    "make_data_root",
    "DATA_ROOT_COUNTS",
    "write_image",
]


def write_image(path: Path, seed: int, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    """Write a small random image (format from the suffix) and return its path."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": (3,), "L": ()}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], *channels), dtype=np.uint8)
    image_format = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}[path.suffix.lower()]
    Image.fromarray(pixels, mode).save(path, format=image_format)
    return path


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)


def make_fashion_mnist_tree(root: Path, train_per_class: int = 3, test_per_class: int = 2,
                            gz: bool = True, seed: int = 0) -> Path:
    """The four Fashion-MNIST idx files (10 classes, 28x28) directly in ``root``.

    Labels are interleaved (0, 1, ..., 9, 0, ...); image ``i`` of a file has every
    pixel equal to ``(17 * i + label) % 256`` in its first row, so tests can check
    which image came back.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for part, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        images[:, 0, :] = ((17 * np.arange(len(labels)) + labels) % 256)[:, None]
        _write_idx(root / f"{part}-images-idx3-ubyte", images, gz)
        _write_idx(root / f"{part}-labels-idx1-ubyte", labels, gz)
    return root


def make_cub200_tree(root: Path, num_classes: int = 4, images_per_class: int = 2) -> Path:
    """``CUB_200_2011/`` with images.txt, image_class_labels.txt, classes.txt, images/
    (and train_test_split.txt, as the official archive has it)."""
    top = root / "CUB_200_2011"
    images, labels, classes, split = [], [], [], []
    image_id = 0
    for class_id in range(1, num_classes + 1):
        folder = f"{class_id:03d}.Bird_{class_id}"
        classes.append(f"{class_id} {folder}")
        for k in range(images_per_class):
            image_id += 1
            relative = f"{folder}/Bird_{class_id}_{k:04d}_{1000 + image_id}.jpg"
            write_image(top / "images" / relative, seed=image_id)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {k % 2}")
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels), ("classes.txt", classes),
                        ("train_test_split.txt", split)):
        (top / name).write_text("\n".join(lines) + "\n")
    return top


def make_cars196_tree(root: Path, num_classes: int = 4, images_per_class: int = 2) -> Path:
    """``car_ims/*.jpg`` and ``cars_annos.mat`` with the official 1 x N struct array
    ``annotations`` (relative_im_path, bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, test)
    and the 1 x C cell array ``class_names``."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    count = num_classes * images_per_class
    annotations = np.zeros((1, count), dtype=[(f, object) for f in fields])
    for i in range(count):
        class_id = i // images_per_class + 1
        relative = f"car_ims/{i + 1:06d}.jpg"
        write_image(root / relative, seed=100 + i)
        annotations[0, i] = (relative, np.array([[1]], np.uint8), np.array([[2]], np.uint8),
                             np.array([[10]], np.uint8), np.array([[9]], np.uint8),
                             np.array([[class_id]], np.uint8), np.array([[i % 2]], np.uint8))
    class_names = np.empty((1, num_classes), dtype=object)
    for c in range(num_classes):
        class_names[0, c] = f"Maker Model {2000 + c}"
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": class_names})
    return root


def make_sop_tree(root: Path, num_train_classes: int = 3, num_test_classes: int = 3,
                  images_per_class: int = 2) -> Path:
    """``Stanford_Online_Products/`` with Ebay_train.txt / Ebay_test.txt / Ebay_info.txt and
    ``<super>_final/<class>_<k>.JPG`` images (train classes first, then test)."""
    top = root / "Stanford_Online_Products"
    supers = ["bicycle", "chair"]
    header = "image_id class_id super_class_id path"
    rows = {"train": [header], "test": [header]}
    info = ["image_id class_id super_class_id path"]
    image_id = 0
    for class_id in range(1, num_train_classes + num_test_classes + 1):
        split = "train" if class_id <= num_train_classes else "test"
        super_id = class_id % len(supers) + 1
        for k in range(images_per_class):
            image_id += 1
            relative = f"{supers[super_id - 1]}_final/{111000 + class_id}_{k}.JPG"
            write_image(top / relative, seed=200 + image_id)
            rows[split].append(f"{image_id} {class_id} {super_id} {relative}")
            info.append(rows[split][-1])
    for split, lines in rows.items():
        (top / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    (top / "Ebay_info.txt").write_text("\n".join(info) + "\n")
    return top


def make_stanford_dogs_tree(root: Path, num_classes: int = 3, train_per_class: int = 2,
                            test_per_class: int = 1) -> Path:
    """``Images/<wnid>-<breed>/<wnid>_<k>.jpg`` with train_list.mat / test_list.mat holding
    the official variables file_list, annotation_list (N x 1 cells) and labels (N x 1, 1-based)."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    lists = {"train": ([], []), "test": ([], [])}
    for c in range(num_classes):
        wnid = f"n020856{20 + c}"
        breed_folder = f"{wnid}-Breed_{c}"
        for k in range(train_per_class + test_per_class):
            relative = f"{breed_folder}/{wnid}_{1000 + k}.jpg"
            write_image(root / "Images" / relative, seed=300 + 10 * c + k)
            split = "train" if k < train_per_class else "test"
            lists[split][0].append(relative)
            lists[split][1].append(c + 1)
    for split, (files, labels) in lists.items():
        file_list = np.empty((len(files), 1), dtype=object)
        annotation_list = np.empty((len(files), 1), dtype=object)
        for i, f in enumerate(files):
            file_list[i, 0] = f
            annotation_list[i, 0] = f.rsplit(".", 1)[0]
        scipy.io.savemat(root / f"{split}_list.mat", {
            "file_list": file_list, "annotation_list": annotation_list,
            "labels": np.array(labels, dtype=np.float64).reshape(-1, 1),
        })
    return root


def make_cifar100_tree(root: Path, train_per_class: int = 2, test_per_class: int = 1, num_classes: int = 100) -> Path:
    """``cifar-100-python/`` with the train, test and meta pickles (latin1-readable dicts with
    data uint8 [N, 3072], fine_labels, coarse_labels, filenames; meta fine/coarse names).
    Returns the parent of ``cifar-100-python`` (torchvision's root convention)."""
    top = root / "cifar-100-python"
    top.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        fine = np.tile(np.arange(num_classes), per_class)
        batch = {
            "batch_label": f"{split} batch",
            "filenames": [f"img_{i}.png" for i in range(len(fine))],
            "fine_labels": fine.tolist(),
            "coarse_labels": (fine % 20).tolist(),
            "data": rng.integers(0, 256, size=(len(fine), 3072), dtype=np.uint8),
        }
        with open(top / split, "wb") as handle:
            pickle.dump(batch, handle)
    with open(top / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"fine_{c}" for c in range(num_classes)],
                     "coarse_label_names": [f"coarse_{c}" for c in range(20)]}, handle)
    return root


def make_tiny_imagenet_tree(root: Path, num_classes: int = 3, train_per_class: int = 2,
                            val_per_class: int = 1) -> Path:
    """``tiny-imagenet-200/`` with wnids.txt, words.txt, train/<wnid>/images/*.JPEG and
    <wnid>_boxes.txt, val/images/*.JPEG + val_annotations.txt, and an unlabelled test/."""
    top = root / "tiny-imagenet-200"
    wnids = [f"n0{1443537 + 1000 * c}" for c in range(num_classes)]
    top.mkdir(parents=True, exist_ok=True)
    (top / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")  # not sorted, as the official file
    (top / "words.txt").write_text("".join(f"{w}\tthing {i}, object\n" for i, w in enumerate(wnids)))
    val_lines = []
    for c, wnid in enumerate(wnids):
        boxes = []
        for k in range(train_per_class):
            write_image(top / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", seed=400 + 10 * c + k, size=(64, 64))
            boxes.append(f"{wnid}_{k}.JPEG\t0\t0\t63\t63")
        (top / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
        for k in range(val_per_class):
            name = f"val_{c * val_per_class + k}.JPEG"
            write_image(top / "val" / "images" / name, seed=500 + 10 * c + k, size=(64, 64))
            val_lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (top / "val" / "val_annotations.txt").write_text("\n".join(val_lines) + "\n")
    write_image(top / "test" / "images" / "test_0.JPEG", seed=599, size=(64, 64))
    return top


# (image set, alphabet, characters): covers every branch of the Vinyals rule
OMNIGLOT_FIXTURE_CHARACTERS = (
    ("images_background", "Armenian", ("character01", "character02")),      # val (and train)
    ("images_background", "Latin", ("character01", "character02")),         # train
    ("images_evaluation", "Angelic", ("character01",)),                     # train
    ("images_evaluation", "Gurmukhi", ("character41", "character42")),      # train, test
    ("images_evaluation", "ULOG", ("character01",)),                        # test
)


def make_omniglot_tree(root: Path, images_per_character: int = 3, size: int = 20) -> Path:
    """``images_background/`` and ``images_evaluation/`` (alphabet/character/NNNN_MM.png,
    square grayscale PNGs) with alphabets chosen so the Vinyals rule gives
    train 6 characters (24 classes), val 2 (8), test 2 (8), train_excluding_val 4 (16)."""
    drawer = 0
    for image_set, alphabet, characters in OMNIGLOT_FIXTURE_CHARACTERS:
        for character in characters:
            drawer += 1
            for k in range(images_per_character):
                write_image(root / image_set / alphabet / character / f"{drawer:04d}_{k + 1:02d}.png",
                            seed=600 + 10 * drawer + k, size=(size, size), mode="L")
    return root


def make_mini_imagenet_tree(root: Path, classes_per_split: tuple[int, int, int] = (3, 2, 2),
                            images_per_class: int = 3) -> Path:
    """``images/<wnid><8 digits>.jpg`` with train.csv / val.csv / test.csv (header ``filename,label``)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    wnid_counter = 0
    for split, num_classes in zip(("train", "val", "test"), classes_per_split):
        lines = ["filename,label"]
        for _ in range(num_classes):
            wnid_counter += 1
            wnid = f"n0{1532829 + wnid_counter}"
            for k in range(images_per_class):
                name = f"{wnid}{k + 1:08d}.jpg"
                write_image(root / "images" / name, seed=700 + 10 * wnid_counter + k, size=(16, 16))
                lines.append(f"{name},{wnid}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


#: what :func:`make_data_root` writes, per dataset: (images, classes, images per split), in the
#: form ``rkd.data.ReleaseCounts`` takes, so a check can compare a generated tree with them
DATA_ROOT_COUNTS = {
    "cub200": (8, 4, (("train", 4), ("test", 4))),
    "cars196": (8, 4, (("train", 4), ("test", 4))),
    "sop": (12, 6, (("train", 6), ("test", 6))),
    "stanford_dogs": (9, 3, (("train", 6), ("test", 3))),
    "cifar100": (300, 100, (("train", 200), ("test", 100))),
    "tiny_imagenet": (9, 3, (("train", 6), ("test", 3))),
    "omniglot": (24, 8, (("train", 18), ("test", 6))),
    "mini_imagenet": (21, 7, (("train", 9), ("val", 6), ("test", 6))),
}


def make_data_root(root: Path) -> Path:
    """Every dataset of the paper, small, under ``root`` as the official archives extract into
    a data root (the layout ``python -m rkd.data check`` expects); counts in :data:`DATA_ROOT_COUNTS`."""
    make_cub200_tree(root)
    make_cars196_tree(root / "cars196")
    make_sop_tree(root)
    make_stanford_dogs_tree(root / "stanford_dogs")
    make_cifar100_tree(root)
    make_tiny_imagenet_tree(root)
    make_omniglot_tree(root / "omniglot")
    make_mini_imagenet_tree(root / "mini_imagenet")
    return root
