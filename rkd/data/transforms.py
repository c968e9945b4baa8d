"""Image transforms of each protocol, built with ``torchvision.transforms.v2``.

``get_transform(name, train)`` is the one entry point; every transform takes a PIL image
(what the real-data readers return) and gives a float32 tensor ``[C, H, W]``.

- ``metric``: resize to 256x256, then random 224 crop + horizontal flip (train) or
  center 224 crop (test), ImageNet mean/std (paper section 4.1; the authors' code
  resizes to a square 256x256, not the short side).
- ``metric_caffe``: the same geometry for the Caffe-converted GoogLeNet / Inception
  backbones of Table 3: BGR channel order, values 0..255 minus the mean (104, 117, 128),
  as the authors' code feeds them.
- ``cifar``: random 32 crop from the image zero-padded to 40x40 + flip (train), none
  (test); the mean/std of the authors' CIFAR code.
- ``tiny_imagenet``: random rotation (15 degrees), colour jitter (0.4 brightness,
  contrast, saturation) and flip (train); the paper names the three augmentations but
  not their strengths, which are this package's choice. ImageNet mean/std.
- ``omniglot``: 28x28 grayscale, inverted so strokes are 1 and background 0 (Snell et
  al.; no augmentation, train and test alike). Rotations are classes and happen in the
  dataset, not here.
- ``mini_imagenet``: 84x84 RGB, ImageNet mean/std (no augmentation, as Snell et al.).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

from rkd.registry import Registry

__all__ = [
    "TRANSFORMS", "get_transform", "transform_names",
    "metric_train", "metric_test", "metric_caffe_train", "metric_caffe_test",
    "cifar_train", "cifar_test", "tiny_imagenet_train", "tiny_imagenet_test",
    "omniglot", "mini_imagenet",
    "IMAGENET_MEAN", "IMAGENET_STD", "CIFAR_MEAN", "CIFAR_STD", "CAFFE_BGR_MEAN",
]

#: ImageNet's per-channel (RGB) mean, of values in 0..1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: ImageNet's per-channel (RGB) standard deviation, of values in 0..1
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the per-channel (RGB) mean the authors' CIFAR code normalises CIFAR-100 with (CIFAR-10's statistics)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
#: the per-channel (RGB) standard deviation of the authors' CIFAR code (CIFAR-10's statistics)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
#: the per-channel (BGR) mean, of values in 0..255, that Caffe-converted backbones expect subtracted
CAFFE_BGR_MEAN = (104.0, 117.0, 128.0)

#: name -> (train transform factory, test transform factory)
TRANSFORMS: Registry = Registry("transform")


def _to_float() -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


def _resized(crop: int) -> int:
    """The square side the metric transforms resize to before cropping ``crop`` (256 for 224)."""
    return round(crop * 256 / 224)


def metric_train(crop: int = 224) -> v2.Compose:
    """Metric learning, training: resize to a square (256 for a 224 crop), random ``crop``
    crop, horizontal flip, ImageNet mean/std."""
    return v2.Compose([v2.Resize((_resized(crop),) * 2), v2.RandomCrop(crop), v2.RandomHorizontalFlip(),
                       *_to_float(), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def metric_test(crop: int = 224) -> v2.Compose:
    """Metric learning, test: resize to a square (256 for a 224 crop), centre ``crop``
    crop, ImageNet mean/std."""
    return v2.Compose([v2.Resize((_resized(crop),) * 2), v2.CenterCrop(crop), *_to_float(),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _rgb_to_caffe_bgr(image: torch.Tensor) -> torch.Tensor:
    return image[[2, 1, 0]] * 255.0


def metric_caffe_train(crop: int = 224) -> v2.Compose:
    """:func:`metric_train`'s geometry for Caffe-converted backbones: BGR, values 0..255
    minus :data:`CAFFE_BGR_MEAN`."""
    return v2.Compose([v2.Resize((_resized(crop),) * 2), v2.RandomCrop(crop), v2.RandomHorizontalFlip(),
                       *_to_float(), v2.Lambda(_rgb_to_caffe_bgr), v2.Normalize(CAFFE_BGR_MEAN, (1.0, 1.0, 1.0))])


def metric_caffe_test(crop: int = 224) -> v2.Compose:
    """:func:`metric_test`'s geometry for Caffe-converted backbones: BGR, values 0..255
    minus :data:`CAFFE_BGR_MEAN`."""
    return v2.Compose([v2.Resize((_resized(crop),) * 2), v2.CenterCrop(crop), *_to_float(),
                       v2.Lambda(_rgb_to_caffe_bgr), v2.Normalize(CAFFE_BGR_MEAN, (1.0, 1.0, 1.0))])


def cifar_train() -> v2.Compose:
    """CIFAR, training: random 32 crop of the image zero-padded by 4 (40x40), horizontal
    flip, :data:`CIFAR_MEAN` / :data:`CIFAR_STD`."""
    return v2.Compose([v2.RandomCrop(32, padding=4, fill=0), v2.RandomHorizontalFlip(), *_to_float(),
                       v2.Normalize(CIFAR_MEAN, CIFAR_STD)])


def cifar_test() -> v2.Compose:
    """CIFAR, test: no augmentation, :data:`CIFAR_MEAN` / :data:`CIFAR_STD`."""
    return v2.Compose([*_to_float(), v2.Normalize(CIFAR_MEAN, CIFAR_STD)])


def tiny_imagenet_train(crop: int = 64) -> v2.Compose:
    """Tiny ImageNet, training: resize to ``crop`` x ``crop``, random rotation (15 degrees),
    colour jitter (0.4 brightness, contrast, saturation), horizontal flip, ImageNet mean/std."""
    return v2.Compose([v2.Resize((crop, crop)), v2.RandomRotation(15),
                       v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4), v2.RandomHorizontalFlip(),
                       *_to_float(), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def tiny_imagenet_test(crop: int = 64) -> v2.Compose:
    """Tiny ImageNet, test: resize to ``crop`` x ``crop``, ImageNet mean/std."""
    return v2.Compose([v2.Resize((crop, crop)), *_to_float(), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _invert(image: torch.Tensor) -> torch.Tensor:
    return 1.0 - image


def omniglot() -> v2.Compose:
    """Omniglot, train and test: 28x28 grayscale, inverted (strokes 1, background 0)."""
    return v2.Compose([v2.Grayscale(1), v2.Resize((28, 28)), *_to_float(), v2.Lambda(_invert)])


def mini_imagenet() -> v2.Compose:
    """miniImageNet, train and test: resize to 84x84 RGB, ImageNet mean/std."""
    return v2.Compose([v2.Resize((84, 84)), *_to_float(), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def upscale_28() -> v2.Compose:
    """8x8 digits to 28x28 (bilinear), so the small CNNs' feature maps of blocks 2-4 keep
    a spatial extent (at 8x8 the last blocks are 1x1, where attention maps are constant)."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize((28, 28), antialias=True)])


TRANSFORMS.register("metric", (metric_train, metric_test))
TRANSFORMS.register("metric_caffe", (metric_caffe_train, metric_caffe_test))
TRANSFORMS.register("cifar", (cifar_train, cifar_test))
TRANSFORMS.register("tiny_imagenet", (tiny_imagenet_train, tiny_imagenet_test))
TRANSFORMS.register("omniglot", (omniglot, omniglot))
TRANSFORMS.register("mini_imagenet", (mini_imagenet, mini_imagenet))
TRANSFORMS.register("upscale_28", (upscale_28, upscale_28))


def get_transform(name: str, train: bool, **options: Any) -> Callable:
    """A fresh transform ``name`` (see :func:`transform_names`) for training or test;
    ``options`` go to its factory (``crop``: the side of the metric transforms' crop,
    224 by default; a dry run asks for less)."""
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {type(train).__name__}: {train!r}")
    train_factory, test_factory = TRANSFORMS.get(name)
    return (train_factory if train else test_factory)(**options)


def takes_crop(name: str) -> bool:
    """Whether transform ``name`` can make smaller images (a ``crop`` side): the metric and
    Tiny ImageNet ones can; those of networks with a fixed input (few-shot) cannot."""
    return all("crop" in inspect.signature(factory).parameters for factory in TRANSFORMS.get(name))


def transform_names() -> list[str]:
    """The names :func:`get_transform` accepts, sorted."""
    return TRANSFORMS.names()
