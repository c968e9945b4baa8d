"""Readers of the few-shot datasets (section 4.3, Tables 5 and 6): Omniglot and miniImageNet
with the splits of Vinyals et al. (2016), as Snell et al. (2017) use them.

Omniglot: the Vinyals split, computed from the official folders
-----------------------------------------------------------------
Vinyals et al. train on 1200 characters and test on the remaining 423, each character
in 4 rotations (0, 90, 180, 270 degrees) counted as 4 classes. The split is not the
official background/evaluation division. The lists that Snell et al. publish
(``data/omniglot/splits/vinyals/{trainval,train,val,test}.txt`` in
jakesnell/prototypical-networks; the same division ships as JSON in torchmeta) follow a
rule that the folders alone reproduce exactly:

- test (423 characters): the characters of ``images_evaluation`` from
  ``Gurmukhi/character42`` on, in sorted order (alphabet, then character): Gurmukhi
  42-45, Kannada, Keble, Malayalam, Manipuri, Mongolian, Old_Church_Slavonic_(Cyrillic),
  Oriya, Sylheti, Syriac_(Serto), Tengwar, Tibetan, ULOG;
- train (1200 characters, Snell's ``trainval``): every other character, i.e. all 964
  of ``images_background`` and the 236 evaluation characters before Gurmukhi/character42;
- val (172 characters, a subset of train): the background alphabets Armenian, Bengali,
  Early_Aramaic, Hebrew and Mkhedruli_(Georgian); ``train_excluding_val`` is the
  other 1028 (Snell's ``train``).

The paper trains on the 1200 (``split="train"``) and tests on the 423. To use list
files instead, pass ``split_file=``: a file of ``alphabet/character/rotDDD`` lines
(each line one class) or a folder holding Snell's files, read as
``trainval.txt`` / ``train.txt`` / ``val.txt`` / ``test.txt`` for the splits
``train`` / ``train_excluding_val`` / ``val`` / ``test``.

Classes are ordered by (alphabet, character, rotation) and labelled 0..C-1 in that
order; ``.classes`` are ``"alphabet/character/rotDDD"``. Images are read as grayscale
("L": strokes 0, background 255) and rotated counter-clockwise by the class's angle
before ``transform`` (the ``omniglot`` transform resizes to 28x28 and inverts so that
strokes are 1, as Snell et al. do).
"""
from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from rkd.data.common import ImageListDataset, contiguous_labels, layout_error, read_image, resolve_root, validate_split
from rkd.data.registry import DATASETS

__all__ = ["Omniglot", "MiniImageNet", "VINYALS_TEST_START", "VINYALS_VAL_ALPHABETS"]

OMNIGLOT_SETS = ("images_background", "images_evaluation")
OMNIGLOT_SPLITS = ("train", "test", "val", "train_excluding_val")
#: first (alphabet, character) of images_evaluation, in sorted order, that belongs to the test split
VINYALS_TEST_START = ("Gurmukhi", "character42")
VINYALS_VAL_ALPHABETS = frozenset({"Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"})
SNELL_SPLIT_FILES = {"train": "trainval.txt", "train_excluding_val": "train.txt", "val": "val.txt",
                     "test": "test.txt"}

OMNIGLOT_TREE = """
<root>/                             (root; or a torchvision root holding omniglot-py/)
    images_background/              30 alphabets, 964 characters (images_background.zip)
        Alphabet_of_the_Magi/character01/0709_01.png ...
    images_evaluation/              20 alphabets, 659 characters (images_evaluation.zip)
        Angelic/character01/0965_01.png ...
"""
OMNIGLOT_SOURCE = ("images_background.zip and images_evaluation.zip from "
                   "https://github.com/brendenlake/omniglot (python/), both extracted into root")

_TRANSPOSE_FOR_ANGLE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
                        270: Image.Transpose.ROTATE_270}


def _is_vinyals_test(image_set: str, alphabet: str, character: str) -> bool:
    return image_set == "images_evaluation" and (alphabet, character) >= VINYALS_TEST_START


# split -> which (image_set, alphabet, character) belong to it under the Vinyals rule
_VINYALS_RULES: dict[str, Callable[[str, str, str], bool]] = {
    "test": _is_vinyals_test,
    "train": lambda s, a, c: not _is_vinyals_test(s, a, c),
    "val": lambda s, a, c: s == "images_background" and a in VINYALS_VAL_ALPHABETS,
    "train_excluding_val": lambda s, a, c: not _is_vinyals_test(s, a, c)
    and not (s == "images_background" and a in VINYALS_VAL_ALPHABETS),
}


def _parse_split_line(line: str, path: Path) -> tuple[str, str, int]:
    parts = line.strip().split("/")
    if len(parts) != 3 or not parts[2].startswith("rot") or not parts[2][3:].isdigit():
        raise ValueError(f"{path}: line {line.strip()!r} is not 'alphabet/character/rotDDD'")
    return parts[0], parts[1], int(parts[2][3:])


@DATASETS.register("omniglot")
class Omniglot(ImageListDataset):
    """Omniglot with the Vinyals split (see the module docstring).

    Options: ``rotations`` (angles in degrees, counter-clockwise; default 0, 90, 180,
    270; used by the built-in split), ``split_file`` (a list file or a folder of
    Snell's list files; overrides the built-in split).
    """

    image_mode = "L"

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None,
                 rotations: Sequence[int] = (0, 90, 180, 270), split_file: str | os.PathLike | None = None):
        validate_split("omniglot", split, OMNIGLOT_SPLITS)
        folder = resolve_root("omniglot", root, OMNIGLOT_SETS[0], "omniglot-py", OMNIGLOT_TREE, OMNIGLOT_SOURCE)
        if not (folder / OMNIGLOT_SETS[1]).is_dir():
            raise layout_error("omniglot", folder, f"missing {OMNIGLOT_SETS[1]}/ beside {OMNIGLOT_SETS[0]}/",
                               OMNIGLOT_TREE, OMNIGLOT_SOURCE)
        characters = {  # (alphabet, character) -> (image set, folder)
            (alphabet.name, character.name): (image_set, character)
            for image_set in OMNIGLOT_SETS
            for alphabet in sorted((folder / image_set).iterdir()) if alphabet.is_dir()
            for character in sorted(alphabet.iterdir()) if character.is_dir()
        }
        if not characters:
            raise layout_error("omniglot", folder, "no alphabet/character folders found", OMNIGLOT_TREE,
                               OMNIGLOT_SOURCE)
        if split_file is None:
            rule = _VINYALS_RULES[split]
            angles = [int(a) for a in rotations]
            if not angles or len(set(angles)) != len(angles):
                raise ValueError(f"omniglot: rotations must be distinct angles, got {rotations!r}")
            chosen = [(a, c, angle) for (a, c), (image_set, _) in sorted(characters.items())
                      if rule(image_set, a, c) for angle in angles]
        else:
            chosen = sorted(self._read_split_file(Path(split_file), split, characters))
        paths, targets, class_names, sample_angles = [], [], [], []
        for label, (alphabet, character, angle) in enumerate(chosen):
            files = sorted((characters[(alphabet, character)][1]).glob("*.png"))
            if not files:
                raise layout_error("omniglot", folder, f"no .png images in {alphabet}/{character}",
                                   OMNIGLOT_TREE, OMNIGLOT_SOURCE)
            paths += files
            targets += [label] * len(files)
            sample_angles += [angle] * len(files)
            class_names.append(f"{alphabet}/{character}/rot{angle:03d}")
        self.root, self.split, self.angles = folder, split, sample_angles
        super().__init__(paths, targets, class_names, transform)

    @staticmethod
    def _read_split_file(path: Path, split: str, characters: dict) -> set[tuple[str, str, int]]:
        if path.is_dir():
            path = path / SNELL_SPLIT_FILES[split]
        if not path.is_file():
            raise FileNotFoundError(f"omniglot: split file {str(path)!r} not found (expected lines like "
                                    "'Angelic/character01/rot000')")
        entries = set()
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            alphabet, character, angle = _parse_split_line(line, path)
            if (alphabet, character) not in characters:
                raise layout_error("omniglot", path.parent, f"{path.name} names {alphabet}/{character}, which is "
                                   "in neither images_background/ nor images_evaluation/", OMNIGLOT_TREE,
                                   OMNIGLOT_SOURCE)
            entries.add((alphabet, character, angle))
        if not entries:
            raise ValueError(f"omniglot: split file {str(path)!r} lists no classes")
        return entries

    def load_image(self, index: int) -> Image.Image:
        image = read_image(self.paths[index], self.image_mode)
        angle = self.angles[index] % 360
        if angle == 0:
            return image
        if angle in _TRANSPOSE_FOR_ANGLE:  # exact, lossless quarter turns
            return image.transpose(_TRANSPOSE_FOR_ANGLE[angle])
        return image.rotate(angle, fillcolor=255)


MINI_TREE = """
<root>/                             (the folder holding the split files and images/)
    train.csv                       header `filename,label`; 64 classes x 600 images
    val.csv                         16 classes
    test.csv                        20 classes
    images/
        n0153282900000005.jpg
        ...
"""
MINI_SOURCE = ("the Ravi & Larochelle split files (https://github.com/twitter/meta-learning-lstm, "
               "data/miniImagenet/{train,val,test}.csv) with the images they name, as made by the "
               "common mini-imagenet preparation scripts from ILSVRC-2012")


@DATASETS.register("mini_imagenet")
class MiniImageNet(ImageListDataset):
    """miniImageNet with the Ravi & Larochelle split (64 / 16 / 20 classes, 600 images each).
    Labels are the split's WordNet ids in sorted order; ``.classes`` are the wnids."""

    def __init__(self, root: str | os.PathLike | None, split: str, transform: Callable | None = None):
        validate_split("mini_imagenet", split, ("train", "val", "test"))
        list_name = f"{split}.csv"
        folder = resolve_root("mini_imagenet", root, list_name, None, MINI_TREE, MINI_SOURCE)
        if not (folder / "images").is_dir():
            raise layout_error("mini_imagenet", folder, "missing images/", MINI_TREE, MINI_SOURCE)
        with open(folder / list_name, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if not rows or [field.strip() for field in rows[0]] != ["filename", "label"]:
            raise layout_error("mini_imagenet", folder, f"{list_name} must start with the header 'filename,label'",
                               MINI_TREE, MINI_SOURCE)
        body = [row for row in rows[1:] if row]
        bad = [row for row in body if len(row) != 2]
        if bad:
            raise layout_error("mini_imagenet", folder, f"{list_name} has a row that is not 'filename,label': "
                               f"{bad[0]}", MINI_TREE, MINI_SOURCE)
        targets, wnids = contiguous_labels([label for _, label in body])
        self.root, self.split = folder, split
        super().__init__([folder / "images" / name for name, _ in body], targets, wnids, transform)
