"""The offline datasets: Fashion-MNIST (real Debian files and a generated idx tree) and
scikit-learn's digits."""
import gzip

import numpy as np
import pytest
import torch
from fixtures_data import make_fashion_mnist_tree

from rkd.data import DatasetLayoutError, get_dataset
from rkd.data.offline import DEBIAN_FASHION_MNIST, FASHION_MNIST_ENV, read_idx

DEBIAN_PRESENT = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()
needs_debian = pytest.mark.skipif(
    not DEBIAN_PRESENT,
    reason=f"Debian's Fashion-MNIST is not installed at {DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)",
)


# ---------------------------------------------------------------- generated idx tree

@pytest.fixture
def fashion_root(tmp_path):
    return make_fashion_mnist_tree(tmp_path / "fm", train_per_class=3, test_per_class=2)


def test_read_idx_parses_header_and_data(tmp_path):
    root = make_fashion_mnist_tree(tmp_path, gz=False)
    images = read_idx(root / "train-images-idx3-ubyte")
    labels = read_idx(root / "train-labels-idx1-ubyte")
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.tile(np.arange(10), 3))
    # the fixture's marker row identifies each image
    np.testing.assert_array_equal(images[:, 0, 0], (17 * np.arange(30) + labels) % 256)


@pytest.mark.parametrize("gz", [True, False])
def test_class_disjoint_protocol_pools_both_files(tmp_path, gz):
    root = make_fashion_mnist_tree(tmp_path, train_per_class=3, test_per_class=2, gz=gz)
    train = get_dataset("fashion_mnist", root, "train")
    test = get_dataset("fashion_mnist", root, "test")
    assert len(train) == len(test) == 5 * (3 + 2)
    assert train.original_targets.unique().tolist() == [0, 1, 2, 3, 4]
    assert test.original_targets.unique().tolist() == [5, 6, 7, 8, 9]
    assert train.targets.unique().tolist() == test.targets.unique().tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(test.targets, test.original_targets - 5)
    assert test.classes == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert test.num_classes == 5


def test_fewshot_protocol_is_the_class_disjoint_split(fashion_root):
    retrieval = get_dataset("fashion_mnist", fashion_root, "test", protocol="retrieval")
    fewshot = get_dataset("fashion_mnist", fashion_root, "test", protocol="fewshot")
    assert torch.equal(retrieval.images, fewshot.images) and torch.equal(retrieval.targets, fewshot.targets)


def test_classification_protocol_uses_the_official_files(fashion_root):
    train = get_dataset("fashion_mnist", fashion_root, "train", protocol="classification")
    test = get_dataset("fashion_mnist", fashion_root, "test", protocol="classification")
    assert (len(train), len(test)) == (30, 20)
    assert train.num_classes == test.num_classes == 10
    raw = read_idx(fashion_root / "t10k-images-idx3-ubyte.gz")
    assert torch.equal(test.images[:, 0], torch.from_numpy(raw.copy()))


def test_getitem_is_float_in_unit_range_and_matches_images_and_targets(fashion_root):
    dataset = get_dataset("fashion_mnist", fashion_root, "train")
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.dtype == torch.float32 and image.shape == (1, 28, 28)
        assert torch.equal(image, dataset.images[index].float() / 255)
        assert target == int(dataset.targets[index])
    assert torch.equal(dataset.float_images([0, 3]), dataset.images[[0, 3]].float() / 255)
    assert dataset.images.dtype == torch.uint8 and dataset.images.shape == (len(dataset), 1, 28, 28)


def test_transform_is_applied_to_the_float_tensor(fashion_root):
    dataset = get_dataset("fashion_mnist", fashion_root, "train", transform=lambda x: x * 2)
    image, _ = dataset[1]
    assert torch.equal(image, dataset.images[1].float() / 255 * 2)


@pytest.mark.parametrize("transform", [None, lambda x: x * 2])
def test_getitems_gives_the_items_of_getitem(fashion_root, transform):
    dataset = get_dataset("fashion_mnist", fashion_root, "train", transform=transform)
    indices = [5, 0, 5, len(dataset) - 1, 7]
    batched = dataset.__getitems__(indices)
    assert len(batched) == len(indices)
    for (image, target), index in zip(batched, indices):
        single, single_target = dataset[index]
        assert torch.equal(image, single) and target == single_target and type(target) is int


def test_torchvision_style_root_and_env_var(tmp_path, monkeypatch):
    make_fashion_mnist_tree(tmp_path / "tv" / "FashionMNIST" / "raw")
    assert len(get_dataset("fashion_mnist", tmp_path / "tv", "train")) == 25
    root = make_fashion_mnist_tree(tmp_path / "env", train_per_class=1, test_per_class=1)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(root))
    assert len(get_dataset("fashion_mnist", None, "train")) == 10


def test_missing_root_names_layout_and_debian_package(tmp_path):
    with pytest.raises(DatasetLayoutError) as error:
        get_dataset("fashion_mnist", tmp_path / "nowhere", "train")
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "train-images-idx3-ubyte" in message and "does not exist" in message
    assert isinstance(error.value, FileNotFoundError)


def test_missing_file_is_a_layout_error(fashion_root):
    (fashion_root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetLayoutError, match="idx files were not all found"):
        get_dataset("fashion_mnist", fashion_root, "train")


def test_truncated_idx_file_is_reported(fashion_root):
    path = fashion_root / "train-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(DatasetLayoutError, match="truncated or corrupt"):
        get_dataset("fashion_mnist", fashion_root, "train")


def test_bad_magic_is_reported(fashion_root):
    (fashion_root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not an idx file at all"))
    with pytest.raises(DatasetLayoutError, match="bad magic"):
        get_dataset("fashion_mnist", fashion_root, "train")


def test_label_count_mismatch_is_reported(tmp_path):
    root = make_fashion_mnist_tree(tmp_path)
    other = make_fashion_mnist_tree(tmp_path / "other", train_per_class=2)
    (root / "train-labels-idx1-ubyte.gz").write_bytes((other / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DatasetLayoutError, match="labels for 30 images"):
        get_dataset("fashion_mnist", root, "train")


def test_bad_split_and_protocol(fashion_root):
    with pytest.raises(ValueError, match="valid splits: train, test"):
        get_dataset("fashion_mnist", fashion_root, "val")
    with pytest.raises(ValueError, match="valid names: classification, fewshot, retrieval"):
        get_dataset("fashion_mnist", fashion_root, "train", protocol="ranking")


# ---------------------------------------------------------------- real Debian files

@needs_debian
def test_debian_fashion_mnist_class_disjoint(monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    train = get_dataset("fashion_mnist", None, "train")  # root=None: the Debian path
    test = get_dataset("fashion_mnist", DEBIAN_FASHION_MNIST, "test")
    assert len(train) == len(test) == 35_000  # 7,000 images per class, train + t10k pooled
    assert torch.bincount(train.targets).tolist() == [7000] * 5
    assert set(train.original_targets.tolist()).isdisjoint(test.original_targets.tolist())
    image, target = train[0]
    assert image.shape == (1, 28, 28) and 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.5


@needs_debian
def test_debian_fashion_mnist_classification():
    train = get_dataset("fashion_mnist", DEBIAN_FASHION_MNIST, "train", protocol="classification")
    test = get_dataset("fashion_mnist", DEBIAN_FASHION_MNIST, "test", protocol="classification")
    assert (len(train), len(test)) == (60_000, 10_000)
    assert torch.bincount(test.targets).tolist() == [1000] * 10
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"


# ---------------------------------------------------------------- digits

def test_digits_class_disjoint():
    train = get_dataset("digits", None, "train")
    test = get_dataset("digits", None, "test")
    assert len(train) + len(test) == 1797
    assert train.original_targets.unique().tolist() == [0, 1, 2, 3, 4]
    assert test.original_targets.unique().tolist() == [5, 6, 7, 8, 9]
    assert test.targets.unique().tolist() == [0, 1, 2, 3, 4]


def test_digits_classification_split_is_stratified_and_fixed():
    train = get_dataset("digits", None, "train", protocol="classification")
    test = get_dataset("digits", None, "test", protocol="classification")
    assert (len(train), len(test)) == (1198, 599)
    assert train.num_classes == test.num_classes == 10
    # stratified: each class's share of the test split is within one image of a third
    totals = torch.bincount(train.targets) + torch.bincount(test.targets)
    assert (torch.bincount(test.targets).float() - totals / 3).abs().max() <= 1
    again = get_dataset("digits", None, "test", protocol="classification")
    assert torch.equal(again.images, test.images)


def test_digits_images_keep_raw_values_and_getitem_divides_by_16():
    from sklearn.datasets import load_digits

    dataset = get_dataset("digits", None, "train")
    assert dataset.images.dtype == torch.uint8 and int(dataset.images.max()) == 16
    assert dataset.max_pixel_value == 16
    image, target = dataset[0]
    raw = load_digits().images[load_digits().target < 5][0]
    assert image.shape == (1, 8, 8) and torch.equal(image[0], torch.from_numpy(raw / 16).float())
    assert target == int(dataset.targets[0])
