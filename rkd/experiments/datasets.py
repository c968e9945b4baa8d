"""The datasets of the experiments, named once: the paper's (read from ``data_root`` in
their official layouts) and the ci stand-ins that play their roles (the glyph world of
:mod:`rkd.data.glyphs`, Fashion-MNIST, scikit-learn digits).
"""
from __future__ import annotations

from collections.abc import Sequence

from ..data.splits import DataSpec
from ..train import TrainConfig
from .recipes import Pretraining

# ------------------------------------------------------------------------------ paper scale

CUB200 = DataSpec("cub200", "CUB-200-2011", train_transform="metric", test_transform="metric", image_size=224)
CARS196 = DataSpec("cars196", "Cars196", train_transform="metric", test_transform="metric", subdir="cars196",
                   image_size=224)
# most SOP classes hold 2-4 images: take them all and fill the batch with more classes,
# as the authors' sampler does
SOP = DataSpec("sop", "SOP", train_transform="metric", test_transform="metric", image_size=224)
SOP_BATCH_OPTIONS = (("small_classes", "take_all"),)
SOP_KS = (1, 10, 100, 1000)
STANFORD_DOGS = DataSpec("stanford_dogs", "Stanford Dogs", test_transform="metric", subdir="stanford_dogs",
                         image_size=224)
# CIFAR-100's 32x32 images as a retrieval domain: the same resize-to-256, centre-crop-224
CIFAR100_RETRIEVAL = DataSpec("cifar100", "CIFAR-100", test_transform="metric", options=(("verify_checksums", True),),
                              dry_run_options=(("verify_checksums", False),), image_size=224)
CIFAR100 = DataSpec("cifar100", "CIFAR-100", train_transform="cifar", test_transform="cifar", image_size=32,
                    dry_run_options=(("verify_checksums", False),))
TINY_IMAGENET = DataSpec("tiny_imagenet", "Tiny ImageNet", train_transform="tiny_imagenet",
                         test_transform="tiny_imagenet", image_size=64)
OMNIGLOT = DataSpec("omniglot", "Omniglot", train_transform="omniglot", test_transform="omniglot", subdir="omniglot",
                    image_size=28, cache_images=True)
MINI_IMAGENET = DataSpec("mini_imagenet", "miniImageNet", train_transform="mini_imagenet",
                         test_transform="mini_imagenet", subdir="mini_imagenet", image_size=84, cache_images=True)

# ------------------------------------------------------------------------------ ci stand-ins

GLYPHS_CUB = DataSpec("glyphs_cub", "glyphs (Ethiopic)", stands_in_for="CUB-200-2011", image_size=28)
GLYPHS_CARS = DataSpec("glyphs_cars", "glyphs (Canadian Syllabics)", stands_in_for="Cars196", image_size=28)
GLYPHS_CIFAR100 = DataSpec("glyphs_cifar100", "glyphs (100 classes)", stands_in_for="CIFAR-100", image_size=28)
GLYPHS_TINY = DataSpec("glyphs_tiny_imagenet", "glyphs (200 classes)", stands_in_for="Tiny ImageNet", image_size=28)
# the glyph sets are arrays in memory already: nothing to decode or cache
# without Omniglot's rotations-as-classes: the stand-in has enough characters (920 training,
# 613 test), and a test split four times smaller is what a few-shot evaluation can afford
GLYPHS_OMNIGLOT = DataSpec("glyphs_omniglot", "glyphs (alphabets)", options=(("rotations", (0,)),),
                           stands_in_for="Omniglot", image_size=28)
GLYPHS_MINI = DataSpec("glyphs_mini_imagenet", "glyphs (hieroglyphs, 64/16/20 classes)", stands_in_for="miniImageNet",
                       image_size=28)
GLYPH_PRETRAIN = DataSpec("glyphs_pretrain", "glyph pretraining corpus", stands_in_for="ImageNet", image_size=28)
FASHION_MNIST = DataSpec("fashion_mnist", "Fashion-MNIST", options=(("protocol", "retrieval"),),
                         max_test_per_class=200, image_size=28)
DIGITS = DataSpec("digits", "digits (scikit-learn)", options=(("protocol", "retrieval"),),
                  train_transform="upscale_28", test_transform="upscale_28", image_size=28)

#: the ci stand-in for ImageNet weights: each trunk trained once as a classifier on the
#: glyph corpus, whose scripts no downstream set uses
#: (8,000 steps: at 4,000 the student was still 2 points short. Over five seeds the
#: teacher's trunk is just above the pages' convergence rule at 8,000 and flat at 12,000:
#: the glyph-world page (book/glyphs.md) gives the measurement; moving to 12,000 retrains
#: every metric-learning page.)
GLYPH_PRETRAINING = Pretraining(
    data=GLYPH_PRETRAIN,
    train=TrainConfig(steps=8000, optimizer="adam", lr=2e-3, weight_decay=1e-5, milestones=(6000,), gamma=0.1),
    batch_size=64, eval_every=800,
)


def choose(available: Sequence[DataSpec], names: Sequence[str] | None, title: str) -> tuple[DataSpec, ...]:
    """The datasets of ``available`` named in ``names`` (registry names), or all of them."""
    if names is None:
        return tuple(available)
    by_name = {d.name: d for d in available}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"dataset(s) {missing} are not part of {title} at this scale; valid: {sorted(by_name)}")
    return tuple(by_name[n] for n in names)


def choose_names(available: Sequence[str], names: Sequence[str] | None, what: str, title: str) -> tuple[str, ...]:
    """``names`` checked against ``available`` (all of them when None)."""
    if names is None:
        return tuple(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"unknown {title} {what}(s) {unknown}; valid: {', '.join(available)}")
    return tuple(names)
