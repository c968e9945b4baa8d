"""A decoded-image cache for image-file datasets that fit in memory (or on a local disk).

Decoding a JPEG and resizing it costs the input pipeline more than the random crop and
flip that follow. :class:`DecodedImageCache` does the decoding and the deterministic
leading transforms (``Resize``, ``CenterCrop``, ``Grayscale`` of a ``v2.Compose``) once
per image, keeps the results as uint8 arrays of one shape, and runs only the rest of the
transform on each access. A batch is bit-identical with and without the cache: the
cached pixels are exactly what the leading transforms give, and they draw no random
numbers.

``location="memory"``: one uint8 array ``[N, H, W, C]`` in the process, filled once with
a few threads; DataLoader workers started by ``fork`` share its pages. Any other
``location`` is a file path: the array is a ``.npy`` file mapped read-only, written
atomically once and reused by later runs (Table 1 trains ~100 students on the same
images) while its key (the image paths, the cached transforms, the shape) matches.

Sizes: CUB-200 train (5,864 images at 256 x 256 x 3) is 1.2 GB, Cars196 train 1.6 GB;
Stanford Online Products (59,551) is 11.7 GB, a disk cache or none.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..runtime import atomic_write, atomic_write_json

__all__ = ["DecodedImageCache", "split_transform"]

#: transforms that draw no random numbers and map a PIL image to a PIL image
_DETERMINISTIC_PREFIX = (v2.Resize, v2.CenterCrop, v2.Grayscale)


def split_transform(transform) -> tuple[list, object | None]:
    """``(cached, rest)``: the leading deterministic transforms of a ``v2.Compose`` and
    a callable for the remaining ones (None when nothing remains)."""
    if isinstance(transform, v2.Compose):
        steps = list(transform.transforms)
    else:
        steps = [] if transform is None else [transform]
    cut = 0
    while cut < len(steps) and isinstance(steps[cut], _DETERMINISTIC_PREFIX):
        cut += 1
    rest = steps[cut:]
    if not rest:
        return steps, None
    return steps[:cut], (rest[0] if len(rest) == 1 else v2.Compose(rest))


class DecodedImageCache(Dataset):
    """``dataset`` (an :class:`rkd.data.ImageListDataset`: ``load_image(i)``,
    ``transform``, ``targets``) with its decoded, resized images cached (module docstring)."""

    def __init__(self, dataset, location: str | os.PathLike = "memory", threads: int | None = None):
        if not callable(getattr(dataset, "load_image", None)) or not hasattr(dataset, "targets"):
            raise TypeError(
                f"DecodedImageCache caches datasets that read image files (rkd.data.ImageListDataset, with "
                f"load_image() and targets); {type(dataset).__name__} has no load_image(): it does not decode "
                f"images, so there is nothing to cache")
        self.dataset = dataset
        self.targets = dataset.targets
        self.classes = getattr(dataset, "classes", None)
        self.cached_transforms, self.rest = split_transform(getattr(dataset, "transform", None))
        self._threads = threads or min(8, os.cpu_count() or 1)
        self.location = location
        self.images = self._load_or_build(location)

    # ------------------------------------------------------------------ building

    def _decode(self, index: int) -> np.ndarray:
        image = self.dataset.load_image(index)
        for transform in self.cached_transforms:
            image = transform(image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"the cached transforms must give PIL images, got {type(image).__name__}")
        return np.asarray(image, dtype=np.uint8)

    def _build(self) -> np.ndarray:
        first = self._decode(0)
        images = np.empty((len(self.dataset), *first.shape), dtype=np.uint8)
        images[0] = first

        def fill(index: int) -> None:
            array = self._decode(index)
            if array.shape != first.shape:
                raise ValueError(
                    f"image {index} is {array.shape} after the cached transforms {self._describe()}, image 0 is "
                    f"{first.shape}: the cache holds images of one size. Start the transform with a fixed-size "
                    f"Resize((h, w)), or do not use the cache for this dataset")
            images[index] = array

        # PIL decodes and resizes without holding the GIL: threads decode in parallel
        with ThreadPoolExecutor(self._threads) as pool:
            list(pool.map(fill, range(1, len(self.dataset))))
        return images

    def _describe(self) -> str:
        return "[" + ", ".join(repr(t) for t in self.cached_transforms) + "]"

    def _key(self) -> dict:
        paths = [str(p) for p in getattr(self.dataset, "paths", range(len(self.dataset)))]
        digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
        return {"images": len(self.dataset), "paths_sha256": digest, "transforms": self._describe(),
                "dataset": type(self.dataset).__name__,
                "image_mode": getattr(self.dataset, "image_mode", None)}

    def _load_or_build(self, location) -> np.ndarray:
        if location == "memory":
            return self._build()
        path = Path(location)
        key_path = path.with_name(path.name + ".json")
        key = self._key()
        if path.is_file() and key_path.is_file():
            try:
                saved = json.loads(key_path.read_text())
            except ValueError:
                saved = None
            if isinstance(saved, dict) and saved.get("key") == key:
                return np.load(path, mmap_mode="r")
        images = self._build()
        with atomic_write(path, "wb") as handle:
            np.save(handle, images)
        atomic_write_json({"key": key, "shape": list(images.shape)}, key_path)
        return np.load(path, mmap_mode="r")

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image = Image.fromarray(np.asarray(self.images[index]))  # uint8 [H, W, 3] -> RGB, [H, W] -> L
        if self.rest is not None:
            image = self.rest(image)
        return image, int(self.targets[index])

    def __repr__(self) -> str:
        where = "memory" if self.location == "memory" else str(self.location)
        return (f"DecodedImageCache({self.dataset!r}, {where}, {tuple(self.images.shape)} uint8, "
                f"cached {self._describe()})")
