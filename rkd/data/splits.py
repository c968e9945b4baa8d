"""A dataset as an experiment names it (:class:`DataSpec`), and the wrappers experiments
put around a split: a per-class cap, rotations as classes, decoded images kept in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from ..progress import progress_bar
from .common import LabelledDataset
from .registry import get_dataset
from .transforms import get_transform, takes_crop

__all__ = ["DataSpec", "load_split", "held_out", "first_per_class", "RotationClasses", "CachedImages", "TargetsSubset"]


@dataclass(frozen=True)
class DataSpec:
    """One dataset of an experiment: its registry name, how it is shown, how it is read.

    ``options`` are passed to the reader (``protocol=...`` for the offline sets);
    ``dry_run_options`` replace some of them in a dry run (CIFAR-100's MD5 check, which a
    generated tree cannot pass). ``image_size`` is the side of the images the networks
    read, for the protocol tables.
    """

    name: str
    display: str
    options: tuple[tuple[str, Any], ...] = ()
    #: the paper's dataset whose role this one plays (None: it is the paper's own)
    stands_in_for: str | None = None
    train_transform: str | None = None
    test_transform: str | None = None
    image_size: int | None = None
    # ci only: evaluate on the first n images of each test class, to keep minutes
    max_test_per_class: int | None = None
    # a dry run: evaluate on the first n classes of the test split only
    max_test_classes: int | None = None
    #: a validation split carved from the training split (for tuning, never from the test
    #: split): ``"classes"`` holds out the last ``holdout`` fraction of the training classes
    #: (retrieval, few-shot: unseen classes, as the test split's are), ``"images"`` the last
    #: fraction of each training class's images (classification: the same classes); the
    #: "train" split is then what is left, the "val" split what is held out
    validation: str | None = None
    holdout: float = 0.2
    #: a dry run: the side of the metric transforms' crop (None: the paper's 224)
    crop: int | None = None
    # where the dataset lives below ``data_root`` when its archive has no top folder of
    # its own (Cars196); None: the reader finds it in ``data_root`` itself
    subdir: str | None = None
    dry_run_options: tuple[tuple[str, Any], ...] = ()
    # every (class, angle) a class of its own (Vinyals et al.'s Omniglot protocol) for a
    # reader that does not do it itself; multiples of 90 degrees
    rotation_classes: tuple[int, ...] = ()
    # decode (and transform) every image once and keep the tensors: exact only for
    # deterministic transforms, as few-shot inputs are
    cache_images: bool = False

    @property
    def paper_name(self) -> str:
        return self.stands_in_for or self.display

    def for_dry_run(self, *, test_per_class: int | None = None, test_classes: int | None = None,
                    side: int | None = None) -> DataSpec:
        """The spec a dry run reads: its dry-run options, nothing cached (decoding a whole
        split takes minutes), the test split cut to ``test_classes`` classes of
        ``test_per_class`` images, and images larger than ``side`` cropped to ``side``."""
        options = {**dict(self.options), **dict(self.dry_run_options)}
        large = (side is not None and self.image_size is not None and self.image_size > side
                 and all(takes_crop(t) for t in (self.train_transform, self.test_transform) if t))
        return replace(self, options=tuple(options.items()), cache_images=False,
                       max_test_per_class=test_per_class or self.max_test_per_class,
                       max_test_classes=test_classes or self.max_test_classes,
                       crop=side if large else self.crop, image_size=side if large else self.image_size)


def load_split(spec: DataSpec, data_root: str | None, split: str, *, train: bool, progress: bool = False) -> Dataset:
    """The ``split`` of ``spec``: with ``train`` the training transform, else the test one;
    the per-class cap (test splits), rotation classes and image cache applied."""
    transform_name = spec.train_transform if train else spec.test_transform
    options = {"crop": spec.crop} if spec.crop is not None else {}
    transform = get_transform(transform_name, train=train, **options) if transform_name else None
    root = data_root
    if spec.subdir is not None and data_root is not None:
        root = str(Path(data_root) / spec.subdir)
    carved = spec.validation is not None and split in ("train", "val")
    dataset = get_dataset(spec.name, root, "train" if carved else split, transform=transform, **dict(spec.options))
    if carved:
        dataset = held_out(dataset, spec.validation, spec.holdout, keep=split == "val")
    if not train and (spec.max_test_per_class is not None or spec.max_test_classes is not None):
        dataset = first_per_class(dataset, spec.max_test_per_class, classes=spec.max_test_classes)
    if spec.rotation_classes:
        dataset = RotationClasses(dataset, spec.rotation_classes)
    if spec.cache_images:
        dataset = CachedImages(dataset, desc=f"{spec.display} {split}: decoding images", progress=progress)
    return dataset


class TargetsSubset(Subset):
    """A Subset that keeps ``.targets`` and ``.classes`` (samplers and metrics read them)."""

    def __init__(self, dataset: Dataset, indices: list[int]):
        super().__init__(dataset, indices)
        all_targets = torch.as_tensor(dataset.targets)
        self.targets = all_targets[torch.as_tensor(indices, dtype=torch.long)].tolist()
        if hasattr(dataset, "classes"):
            self.classes = dataset.classes

    @property
    def num_classes(self) -> int:
        classes = getattr(self, "classes", None)
        return len(classes) if classes else int(max(self.targets)) + 1


def held_out(dataset: Dataset, kind: str, fraction: float, *, keep: bool) -> Dataset:
    """A validation split carved from ``dataset`` (a training split), deterministically:
    ``kind="classes"``: the last ``fraction`` of its classes (by label); ``"images"``: the
    last ``fraction`` of each class's images (in dataset order). ``keep`` True: the held-out
    part, else the rest."""
    if kind not in ("classes", "images"):
        raise ValueError(f"validation must be 'classes' or 'images', got {kind!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {fraction!r}")
    targets = torch.as_tensor(dataset.targets).tolist()
    if kind == "classes":
        labels = sorted(set(targets))
        cut = len(labels) - max(1, round(fraction * len(labels)))
        held = set(labels[cut:])
        chosen = [i for i, t in enumerate(targets) if (t in held) == keep]
    else:
        positions: dict[int, list[int]] = {}
        for index, target in enumerate(targets):
            positions.setdefault(target, []).append(index)
        held_indices = {i for members in positions.values()
                        for i in members[len(members) - max(1, round(fraction * len(members))):]}
        chosen = [i for i in range(len(targets)) if (i in held_indices) == keep]
    return TargetsSubset(dataset, chosen)


def first_per_class(dataset: Dataset, n: int | None, *, classes: int | None = None) -> Dataset:
    """The first ``n`` images (None: all) of each class, in dataset order, of the first
    ``classes`` classes to appear (None: all); deterministic."""
    counts: dict[int, int] = {}
    keep = []
    for index, target in enumerate(torch.as_tensor(dataset.targets).tolist()):
        if target not in counts and classes is not None and len(counts) >= classes:
            continue
        if n is None or counts.get(target, 0) < n:
            counts[target] = counts.get(target, 0) + 1
            keep.append(index)
    return TargetsSubset(dataset, keep)


class RotationClasses(LabelledDataset):
    """Every (class, angle) of ``dataset`` as a class of its own, as Vinyals et al. do
    with Omniglot's characters: ``len(angles)`` copies of the dataset, copy ``a``
    rotated counter-clockwise by ``angles[a]`` (multiples of 90 degrees, exact).

    Class ``c * len(angles) + a`` is class ``c`` at ``angles[a]`` (ordered by class,
    then angle, as the Omniglot reader orders them). Images must be tensors [C, H, W].
    """

    def __init__(self, dataset: Dataset, angles: tuple[int, ...]):
        angles = tuple(int(a) for a in angles)
        if not angles or len(set(a % 360 for a in angles)) != len(angles) or any(a % 90 for a in angles):
            raise ValueError(f"angles must be distinct multiples of 90 degrees, got {angles}")
        self.dataset = dataset
        self.angles = angles
        base = torch.as_tensor(dataset.targets).long()
        self.base_size = len(base)
        copies = torch.arange(len(angles)).repeat_interleave(self.base_size)
        self.targets = base.repeat(len(angles)) * len(angles) + copies
        base_names = getattr(dataset, "classes", None) or [str(c) for c in range(int(base.max()) + 1)]
        self.classes = [f"{name}/rot{angle % 360:03d}" for name in base_names for angle in angles]

    def __getitem__(self, index: int):
        copy, base_index = divmod(int(index), self.base_size)
        image, _ = self.dataset[base_index]
        if not isinstance(image, torch.Tensor):
            raise TypeError("RotationClasses needs tensor images [C, H, W]; give the dataset a transform that "
                            "returns tensors")
        return torch.rot90(image, k=(self.angles[copy] % 360) // 90, dims=(-2, -1)), int(self.targets[index])


class CachedImages(Dataset):
    """Every image of ``dataset`` decoded (and transformed) once, kept as one tensor.

    Exact only for deterministic transforms, which is what Snell et al. use for
    few-shot learning; it turns a per-step JPEG decode into an index.
    """

    #: the images are stored transformed: reading one draws no random numbers
    transform = None

    def __init__(self, dataset: Dataset, desc: str = "caching images", progress: bool = False):
        bar = progress_bar(len(dataset), desc=desc, enabled=progress)
        images = []
        for i in range(len(dataset)):
            images.append(dataset[i][0])
            bar.update(1)
        bar.close()
        self.images = torch.stack(images)
        self.targets = torch.as_tensor(dataset.targets).long().clone()
        self.classes = list(getattr(dataset, "classes", []))

    @property
    def num_classes(self) -> int:
        return len(self.classes) or int(self.targets.max()) + 1

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.images[index], int(self.targets[index])

