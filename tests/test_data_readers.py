"""Every real-data reader on a tiny tree in its official layout (tests/fixtures_data.py),
plus the transforms."""
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import (
    make_cars196_tree,
    make_cifar100_tree,
    make_cub200_tree,
    make_mini_imagenet_tree,
    make_omniglot_tree,
    make_sop_tree,
    make_stanford_dogs_tree,
    make_tiny_imagenet_tree,
    write_image,
)
from PIL import Image

from rkd.data import (
    DatasetLayoutError,
    ImageReadError,
    dataset_names,
    get_dataset,
    get_transform,
    transform_names,
)
from rkd.data.fewshot import _VINYALS_RULES
from rkd.registry import UnknownNameError


@dataclass
class Spec:
    maker: object
    sizes: dict  # split -> (images, classes)
    class_disjoint: bool
    malformed: str  # a file or folder, relative to the returned root, whose removal breaks the layout
    layout_marker: str  # a string the layout error must show
    options: dict = field(default_factory=dict)


SPECS = {
    "cub200": Spec(make_cub200_tree, {"train": (4, 2), "test": (4, 2)}, True, "image_class_labels.txt",
                   "CUB_200_2011/"),
    "cars196": Spec(make_cars196_tree, {"train": (4, 2), "test": (4, 2)}, True, "car_ims", "cars_annos.mat"),
    "sop": Spec(make_sop_tree, {"train": (6, 3), "test": (6, 3)}, True, "Ebay_train.txt", "Ebay_train.txt"),
    "stanford_dogs": Spec(make_stanford_dogs_tree, {"train": (6, 3), "test": (3, 3)}, False, "Images",
                          "train_list.mat"),
    "cifar100": Spec(make_cifar100_tree, {"train": (200, 100), "test": (100, 100)}, False,
                     "cifar-100-python/meta", "cifar-100-python/", {"verify_checksums": False}),
    "tiny_imagenet": Spec(make_tiny_imagenet_tree, {"train": (6, 3), "test": (3, 3)}, False,
                          "val/val_annotations.txt", "tiny-imagenet-200/"),
    "omniglot": Spec(make_omniglot_tree, {"train": (72, 24), "test": (24, 8), "val": (24, 8),
                                          "train_excluding_val": (48, 16)}, True, "images_evaluation",
                     "images_background/"),
    "mini_imagenet": Spec(make_mini_imagenet_tree, {"train": (9, 3), "val": (6, 2), "test": (6, 2)}, True,
                          "images", "train.csv"),
}
CASES = [(name, split) for name, spec in SPECS.items() for split in spec.sizes]


def build(name, tmp_path):
    return SPECS[name].maker(tmp_path / name)


def test_every_real_reader_is_registered():
    # besides the paper's datasets: the offline stand-ins (tests/test_data_offline.py, tests/test_glyphs.py)
    offline = {"fashion_mnist", "digits"} | {n for n in dataset_names() if n.startswith("glyphs_")}
    assert set(SPECS) | offline == set(dataset_names())


@pytest.mark.parametrize("name,split", CASES)
def test_split_sizes_labels_and_getitem(name, split, tmp_path):
    spec = SPECS[name]
    dataset = get_dataset(name, build(name, tmp_path), split, **spec.options)
    images, classes = spec.sizes[split]
    assert len(dataset) == images
    assert dataset.num_classes == len(dataset.classes) == classes
    targets = torch.as_tensor(dataset.targets)
    assert targets.dtype == torch.int64 and targets.dim() == 1
    assert sorted(set(targets.tolist())) == list(range(classes))  # contiguous 0..C-1
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert isinstance(image, Image.Image)
        assert target == int(targets[index])


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.class_disjoint])
def test_train_and_test_classes_are_disjoint(name, tmp_path):
    root = build(name, tmp_path)
    train = get_dataset(name, root, "train", **SPECS[name].options)
    test = get_dataset(name, root, "test", **SPECS[name].options)
    assert set(train.classes).isdisjoint(test.classes)
    assert set(train.paths).isdisjoint(test.paths)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_missing_root_shows_the_layout_and_the_source(name, tmp_path):
    with pytest.raises(DatasetLayoutError) as error:
        get_dataset(name, tmp_path / "absent", "train", **SPECS[name].options)
    message = str(error.value)
    assert SPECS[name].layout_marker in message and "Get the data:" in message and "does not exist" in message
    with pytest.raises(FileNotFoundError):
        get_dataset(name, None, "train", **SPECS[name].options)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_malformed_root_is_a_layout_error(name, tmp_path):
    root = build(name, tmp_path)
    broken = root / SPECS[name].malformed
    shutil.rmtree(broken) if broken.is_dir() else broken.unlink()
    with pytest.raises(DatasetLayoutError) as error:
        get_dataset(name, root, "train", **SPECS[name].options)
    assert Path(SPECS[name].malformed).name in str(error.value)
    assert "Expected layout" in str(error.value)


@pytest.mark.parametrize("name", [n for n in SPECS if n != "cifar100"])  # CIFAR-100 has no image files
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_raises_naming_the_file(name, damage, tmp_path):
    dataset = get_dataset(name, build(name, tmp_path), "train")
    victim = dataset.paths[1]
    if damage == "garbage":
        victim.write_bytes(b"this is not an image")
    else:
        write_image(victim, seed=1, size=(64, 64))  # large enough that cutting it loses pixel data
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    dataset[0]  # other images still load
    with pytest.raises(ImageReadError, match=str(victim.name)):
        dataset[1]
    assert dataset.verify() == [victim]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_unknown_split_lists_the_valid_ones(name, tmp_path):
    with pytest.raises(ValueError, match="valid splits: train"):
        get_dataset(name, tmp_path, "validation", **SPECS[name].options)


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(UnknownNameError, match="valid names: cars196, cifar100, cub200"):
        get_dataset("imagenet", "/data", "train")


@pytest.mark.parametrize("name,parent_of", [("cub200", "CUB_200_2011"), ("sop", "Stanford_Online_Products"),
                                            ("tiny_imagenet", "tiny-imagenet-200")])
def test_parent_of_the_official_top_folder_is_accepted(name, parent_of, tmp_path):
    top = build(name, tmp_path)
    assert top.name == parent_of
    assert len(get_dataset(name, top.parent, "train")) == SPECS[name].sizes["train"][0]


def test_transform_is_applied(tmp_path):
    dataset = get_dataset("cub200", build("cub200", tmp_path), "train", transform=lambda image: image.size)
    assert dataset[0] == ((12, 10), 0)


# ---------------------------------------------------------------- per-dataset details

def test_cub200_labels_follow_class_ids(tmp_path):
    test = get_dataset("cub200", make_cub200_tree(tmp_path, num_classes=6, images_per_class=1), "test")
    assert test.class_ids == [4, 5, 6]
    assert [p.parent.name for p in test.paths] == ["004.Bird_4", "005.Bird_5", "006.Bird_6"]
    assert test.targets.tolist() == [0, 1, 2]


def test_cars196_ignores_the_classification_test_flag(tmp_path):
    import scipy.io

    root = make_cars196_tree(tmp_path)
    annotations = scipy.io.loadmat(root / "cars_annos.mat", squeeze_me=True)["annotations"]
    assert set(annotations["test"].astype(int)) == {0, 1}  # the fixture flags half the images
    train = get_dataset("cars196", root, "train")
    assert [p.name for p in train.paths] == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    assert train.class_ids == [1, 2]


def test_sop_bad_header(tmp_path):
    root = make_sop_tree(tmp_path)
    lines = (root / "Ebay_train.txt").read_text().splitlines()
    (root / "Ebay_train.txt").write_text("\n".join(["id class super path"] + lines[1:]))
    with pytest.raises(DatasetLayoutError, match="header"):
        get_dataset("sop", root, "train")


def test_sop_keeps_super_classes(tmp_path):
    dataset = get_dataset("sop", make_sop_tree(tmp_path), "test")
    assert dataset.class_ids == [4, 5, 6] and len(dataset.super_targets) == len(dataset)


def test_stanford_dogs_classes_are_breed_folders(tmp_path):
    test = get_dataset("stanford_dogs", make_stanford_dogs_tree(tmp_path), "test")
    assert test.classes == ["n02085620-Breed_0", "n02085621-Breed_1", "n02085622-Breed_2"]
    assert all(p.parent.name == test.classes[t] for p, t in zip(test.paths, test.targets.tolist()))


def test_cifar100_reads_pixels_and_checks_md5(tmp_path):
    root = make_cifar100_tree(tmp_path)
    with pytest.raises(DatasetLayoutError, match="MD5"):
        get_dataset("cifar100", root, "train")  # the fixture is not the official file
    dataset = get_dataset("cifar100", root / "cifar-100-python", "test", verify_checksums=False)
    image, target = dataset[3]
    assert np.array_equal(np.asarray(image), dataset.data[3]) and dataset.data.shape == (100, 32, 32, 3)
    assert target == 3 and dataset.classes[3] == "fine_3" and int(dataset.coarse_targets[3]) == 3


def test_tiny_imagenet_sorts_wnids_and_reads_val_annotations(tmp_path):
    root = make_tiny_imagenet_tree(tmp_path)
    test = get_dataset("tiny_imagenet", root, "test")
    assert test.classes == sorted(test.classes)
    assert test.class_names[0] == "thing 0, object"
    lines = (root / "val" / "val_annotations.txt").read_text().splitlines()
    assert [test.classes[t] for t in test.targets.tolist()] == [line.split("\t")[1] for line in lines]
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DatasetLayoutError, match="line 1"):
        get_dataset("tiny_imagenet", root, "test")


def test_mini_imagenet_bad_header(tmp_path):
    root = make_mini_imagenet_tree(tmp_path)
    (root / "val.csv").write_text("name,wnid\nx.jpg,n1\n")
    with pytest.raises(DatasetLayoutError, match="filename,label"):
        get_dataset("mini_imagenet", root, "val")


# ---------------------------------------------------------------- Omniglot

def test_omniglot_rotations_are_classes(tmp_path):
    dataset = get_dataset("omniglot", make_omniglot_tree(tmp_path), "test")
    assert dataset.classes[:4] == [f"Gurmukhi/character42/rot{a:03d}" for a in (0, 90, 180, 270)]
    by_class = {c: [i for i, t in enumerate(dataset.targets.tolist()) if t == c] for c in range(4)}
    upright = np.asarray(dataset[by_class[0][0]][0])
    for label, turn in ((1, Image.Transpose.ROTATE_90), (2, Image.Transpose.ROTATE_180),
                        (3, Image.Transpose.ROTATE_270)):
        rotated, target = dataset[by_class[label][0]]
        assert target == label and rotated.mode == "L"
        assert np.array_equal(np.asarray(rotated), np.asarray(Image.fromarray(upright).transpose(turn)))
    assert not np.array_equal(np.asarray(dataset[by_class[1][0]][0]), upright)


def test_omniglot_vinyals_split_membership(tmp_path):
    root = make_omniglot_tree(tmp_path)

    def characters(split):
        return {c.rsplit("/", 1)[0] for c in get_dataset("omniglot", root, split).classes}

    assert characters("test") == {"Gurmukhi/character42", "ULOG/character01"}
    assert characters("val") == {"Armenian/character01", "Armenian/character02"}
    assert characters("train") == {"Armenian/character01", "Armenian/character02", "Latin/character01",
                                   "Latin/character02", "Angelic/character01", "Gurmukhi/character41"}
    assert characters("train_excluding_val") == characters("train") - characters("val")


# character counts of the official release (images_background: 30 alphabets, 964
# characters; images_evaluation: 20 alphabets, 659)
OFFICIAL_BACKGROUND = {
    "Alphabet_of_the_Magi": 20, "Anglo-Saxon_Futhorc": 29, "Arcadian": 26, "Armenian": 41,
    "Asomtavruli_(Georgian)": 40, "Balinese": 24, "Bengali": 46, "Blackfoot_(Canadian_Aboriginal_Syllabics)": 14,
    "Braille": 26, "Burmese_(Myanmar)": 34, "Cyrillic": 33, "Early_Aramaic": 22, "Futurama": 26, "Grantha": 43,
    "Greek": 24, "Gujarati": 48, "Hebrew": 22, "Inuktitut_(Canadian_Aboriginal_Syllabics)": 16,
    "Japanese_(hiragana)": 52, "Japanese_(katakana)": 47, "Korean": 40, "Latin": 26, "Malay_(Jawi_-_Arabic)": 40,
    "Mkhedruli_(Georgian)": 41, "N_Ko": 33, "Ojibwe_(Canadian_Aboriginal_Syllabics)": 14, "Sanskrit": 42,
    "Syriac_(Estrangelo)": 23, "Tagalog": 17, "Tifinagh": 55,
}
OFFICIAL_EVALUATION = {
    "Angelic": 20, "Atemayar_Qelisayer": 26, "Atlantean": 26, "Aurek-Besh": 26, "Avesta": 26, "Ge_ez": 26,
    "Glagolitic": 45, "Gurmukhi": 45, "Kannada": 41, "Keble": 26, "Malayalam": 47, "Manipuri": 40,
    "Mongolian": 30, "Old_Church_Slavonic_(Cyrillic)": 45, "Oriya": 46, "Sylheti": 28, "Syriac_(Serto)": 23,
    "Tengwar": 25, "Tibetan": 42, "ULOG": 26,
}


def test_vinyals_rule_gives_the_published_split_sizes_on_the_official_inventory():
    inventory = [(image_set, alphabet, f"character{k:02d}")
                 for image_set, counts in (("images_background", OFFICIAL_BACKGROUND),
                                           ("images_evaluation", OFFICIAL_EVALUATION))
                 for alphabet, count in counts.items() for k in range(1, count + 1)]
    assert len(inventory) == 1623
    sizes = {split: sum(rule(*c) for c in inventory) for split, rule in _VINYALS_RULES.items()}
    # Vinyals et al.: 1200 train / 423 test; Snell et al.'s val.txt: 172, train.txt: 1028
    assert sizes == {"train": 1200, "test": 423, "val": 172, "train_excluding_val": 1028}


def test_omniglot_split_file_and_split_folder(tmp_path):
    root = make_omniglot_tree(tmp_path / "omniglot")
    split_file = tmp_path / "custom.txt"
    split_file.write_text("Latin/character02/rot090\nAngelic/character01/rot000\n\n")
    dataset = get_dataset("omniglot", root, "train", split_file=split_file)
    assert dataset.classes == ["Angelic/character01/rot000", "Latin/character02/rot090"]
    assert len(dataset) == 6
    folder = tmp_path / "splits"
    folder.mkdir()
    (folder / "test.txt").write_text("ULOG/character01/rot180\n")
    assert get_dataset("omniglot", root, "test", split_file=folder).classes == ["ULOG/character01/rot180"]
    (folder / "val.txt").write_text("Angelic/character01\n")
    with pytest.raises(ValueError, match="alphabet/character/rotDDD"):
        get_dataset("omniglot", root, "val", split_file=folder)
    (folder / "val.txt").write_text("Klingon/character01/rot000\n")
    with pytest.raises(DatasetLayoutError, match="Klingon/character01"):
        get_dataset("omniglot", root, "val", split_file=folder)


def test_omniglot_accepts_torchvision_parent(tmp_path):
    make_omniglot_tree(tmp_path / "omniglot-py")
    assert len(get_dataset("omniglot", tmp_path, "test")) == 24


# ---------------------------------------------------------------- transforms

TRANSFORM_SHAPES = {"metric": (3, 224, 224), "metric_caffe": (3, 224, 224), "cifar": (3, 32, 32),
                    "tiny_imagenet": (3, 64, 64), "omniglot": (1, 28, 28), "mini_imagenet": (3, 84, 84),
                    "upscale_28": (3, 28, 28)}


def test_every_transform_is_tested():
    assert set(transform_names()) == set(TRANSFORM_SHAPES)


@pytest.mark.parametrize("name", sorted(TRANSFORM_SHAPES))
@pytest.mark.parametrize("train", [True, False])
def test_transform_output_shape(name, train):
    size = {"cifar": (32, 32), "tiny_imagenet": (64, 64)}.get(name, (40, 30))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    output = get_transform(name, train)(image)
    assert output.dtype == torch.float32 and tuple(output.shape) == TRANSFORM_SHAPES[name]


def test_test_transforms_are_deterministic_and_normalised():
    image = Image.fromarray(np.full((300, 300, 3), 255, dtype=np.uint8))
    first, second = get_transform("metric", False)(image), get_transform("metric", False)(image)
    assert torch.equal(first, second)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(first[:, 0, 0], expected)


def test_omniglot_transform_inverts_strokes():
    image = Image.new("L", (105, 105), 255)  # white background
    image.paste(0, (40, 40, 60, 60))  # a black stroke
    tensor = get_transform("omniglot", True)(image)
    assert tensor[0, 0, 0] == 0.0 and tensor[0, 14, 14] == 1.0


def test_cifar_train_transform_pads_with_zeros():
    torch.manual_seed(0)
    image = Image.fromarray(np.full((32, 32, 3), 255, dtype=np.uint8))
    crops = torch.stack([get_transform("cifar", True)(image) for _ in range(20)])
    black = (torch.zeros(3) - torch.tensor([0.4914, 0.4822, 0.4465])) / torch.tensor([0.2023, 0.1994, 0.2010])
    assert torch.isclose(crops[:, 0], black[0]).any()  # some crops include the zero padding


def test_get_transform_errors():
    with pytest.raises(UnknownNameError, match="valid names: cifar, metric"):
        get_transform("imagenet", True)
    with pytest.raises(TypeError, match="train must be a bool"):
        get_transform("metric", "train")


def test_upscale_28_keeps_a_digits_tensor_in_range():
    digits = get_dataset("digits", None, "train")
    image, _ = digits[0]
    out = get_transform("upscale_28", False)(image)
    assert tuple(out.shape) == (1, 28, 28) and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 + 1e-6
