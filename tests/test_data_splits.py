"""rkd.data.splits: rotation classes (Vinyals et al.'s Omniglot protocol), the decoded
image cache, the per-class cap, and load_split putting them together."""
from dataclasses import replace

import pytest
import torch

from rkd.data.splits import CachedImages, DataSpec, RotationClasses, first_per_class, load_split
from rkd.experiments.datasets import DIGITS


class Toy(torch.utils.data.Dataset):
    """Two classes of three 1x2x3 images with distinct pixels."""

    def __init__(self):
        self.images = torch.arange(6 * 6, dtype=torch.float32).view(6, 1, 2, 3) + 4 * torch.arange(6).view(6, 1, 1, 1)
        self.targets = torch.tensor([0, 0, 0, 1, 1, 1])
        self.classes = ["a", "b"]

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return self.images[i], int(self.targets[i])


def test_rotation_classes_make_each_class_and_angle_a_class():
    base = Toy()
    rotated = RotationClasses(base, (0, 90, 180, 270))
    assert len(rotated) == 24 and rotated.num_classes == 8
    assert rotated.classes[:4] == ["a/rot000", "a/rot090", "a/rot180", "a/rot270"]
    for index in range(24):
        copy, base_index = divmod(index, 6)
        image, target = rotated[index]
        assert target == int(base.targets[base_index]) * 4 + copy == int(rotated.targets[index])
        assert torch.equal(image, torch.rot90(base.images[base_index], k=copy, dims=(-2, -1)))
    # a quarter turn counter-clockwise moves the top-right pixel to the top-left
    image, _ = rotated[6]
    assert image.shape == (1, 3, 2) and image[0, 0, 0] == base.images[0][0, 0, 2]


def test_rotation_classes_refuse_other_angles_and_non_tensor_images():
    with pytest.raises(ValueError, match="multiples of 90"):
        RotationClasses(Toy(), (0, 45))
    with pytest.raises(ValueError, match="distinct"):
        RotationClasses(Toy(), (0, 360))

    class Pil(Toy):
        def __getitem__(self, i):
            return "not a tensor", 0

    with pytest.raises(TypeError, match="tensor images"):
        RotationClasses(Pil(), (0, 90))[0]


def test_cached_images_hold_what_the_dataset_returns():
    base = RotationClasses(Toy(), (0, 180))
    cached = CachedImages(base)
    assert len(cached) == len(base) and cached.num_classes == 4 and cached.classes == base.classes
    for i in range(len(base)):
        assert torch.equal(cached[i][0], base[i][0]) and cached[i][1] == base[i][1]


def test_first_per_class_keeps_the_first_images_of_each_class_in_order():
    base = Toy()
    base.targets = torch.tensor([1, 0, 1, 1, 0, 1])
    capped = first_per_class(base, 2)
    assert list(capped.indices) == [0, 1, 2, 4]
    assert capped.targets == [1, 0, 1, 0] and capped.classes == ["a", "b"] and capped.num_classes == 2
    assert torch.equal(capped[3][0], base.images[4])
    assert list(first_per_class(base, 10).indices) == list(range(6))


def test_load_split_applies_the_cap_to_test_splits_then_rotations_then_the_cache():
    spec = replace(DIGITS, max_test_per_class=3)
    test = load_split(spec, None, "test", train=False)
    counts = torch.bincount(torch.as_tensor(test.targets))
    assert (counts == 3).all() and len(counts) == test.num_classes
    train = load_split(spec, None, "train", train=True)
    assert torch.bincount(torch.as_tensor(train.targets)).min() > 3  # the cap is for test splits only
    rotated = load_split(replace(spec, rotation_classes=(0, 180), cache_images=True), None, "test", train=False)
    assert isinstance(rotated, CachedImages) and rotated.num_classes == 2 * test.num_classes
    image, target = rotated[len(test)]  # the first image of the second copy: rotated by 180 degrees
    assert target == int(test.targets[0]) * 2 + 1
    assert torch.equal(image, torch.rot90(test[0][0], k=2, dims=(-2, -1)))
    assert image.shape == (1, 28, 28)  # DIGITS' upscale_28 transform


def test_data_spec_dry_run_options_replace_the_options():
    spec = DataSpec("cifar100", "CIFAR-100", options=(("verify_checksums", True), ("x", 1)),
                    dry_run_options=(("verify_checksums", False),))
    assert dict(spec.for_dry_run().options) == {"verify_checksums": False, "x": 1}
    assert spec.paper_name == "CIFAR-100"
    assert replace(spec, stands_in_for="ImageNet").paper_name == "ImageNet"
