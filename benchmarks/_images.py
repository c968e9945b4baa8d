"""A generated tree of JPEG files at the size of the paper's datasets, for the input
pipeline benchmarks: each image is a smooth random field with fine noise (so it
compresses like a photograph, about 40-60 KB at 500 x 375, quality 90), one folder per
class. Nothing here is real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["make_jpeg_tree", "PAPER_IMAGE_SIZE"]

#: CUB-200-2011's images are about 500 x 375 on average (width x height)
PAPER_IMAGE_SIZE = (500, 375)


def _image(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    coarse = rng.integers(0, 256, size=(height // 32 + 2, width // 32 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    noise = rng.integers(-12, 13, size=smooth.shape, dtype=np.int16)
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


def make_jpeg_tree(root: str | Path, classes: int, per_class: int, size: tuple[int, int] = PAPER_IMAGE_SIZE,
                   seed: int = 0) -> tuple[list[Path], list[int]]:
    """Write ``classes x per_class`` JPEGs under ``root/<class>/`` (kept if already there);
    return their paths and labels."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for label in range(classes):
        for index in range(per_class):
            path = root / f"{label:04d}" / f"{index:04d}.jpg"
            image = _image(rng, size)
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path, format="JPEG", quality=90)
            paths.append(path)
            labels.append(label)
    return paths, labels
