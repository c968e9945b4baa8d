"""rkd.data.check_data_root and `python -m rkd.data check` on generated data roots
(tests/fixtures_data.py): ready trees, and each way a tree can fall short named."""
import shutil
from pathlib import Path

import pytest
from fixtures_data import DATA_ROOT_COUNTS, make_cub200_tree, make_data_root, write_image

from rkd.data import RELEASES, ReleaseCounts, check, check_data_root, check_dataset
from rkd.data.__main__ import main
from rkd.data.check import check_folder

SMALL_COUNTS = {name: ReleaseCounts(*counts) for name, counts in DATA_ROOT_COUNTS.items()}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_data_root(tmp_path_factory.mktemp("data_root"))


@pytest.fixture
def root(tmp_path) -> Path:
    """A data root of its own for a test that damages it."""
    return make_data_root(tmp_path / "data")


def problems(report) -> str:
    return " | ".join(report.problems)


def test_a_generated_root_is_ready_against_its_own_counts(pristine):
    reports = check_data_root(pristine, official=False, counts=SMALL_COUNTS, progress=False)
    assert [r.name for r in reports] == list(RELEASES)
    for report in reports:
        assert report.ready, report.line()
        assert (report.images, report.classes) == DATA_ROOT_COUNTS[report.name][:2]
        assert report.line().startswith(f"{report.name} ") and " ready " in report.line()


def test_without_counts_only_the_layout_and_images_are_checked(pristine):
    assert all(r.ready for r in check_data_root(pristine, ["cub200", "omniglot"], official=False, progress=False))


def test_official_counts_are_the_default_and_name_the_shortfall(pristine):
    (report,) = check_data_root(pristine, ["cub200"], progress=False)
    assert not report.ready
    assert "official release has 11,788 in 200" in problems(report) and "11,780 missing" in problems(report)
    assert "train 4 of 5,864" in problems(report)
    assert "python -m rkd.data prepare cub200 CUB_200_2011.tgz" in problems(report)


def test_counts_per_split_are_compared(pristine):
    swapped = ReleaseCounts(8, 4, (("train", 5), ("test", 3)))
    report = check_dataset(pristine, "cub200", official=False, expected=swapped, progress=False)
    assert "images per split: train 4 of 5, test 4 of 3" in problems(report)


def test_the_official_counts_are_the_papers():
    totals = {name: (r.counts.images, r.counts.classes) for name, r in RELEASES.items()}
    assert totals == {"cub200": (11_788, 200), "cars196": (16_185, 196), "sop": (120_053, 22_634),
                      "stanford_dogs": (20_580, 120), "cifar100": (60_000, 100), "tiny_imagenet": (110_000, 200),
                      "omniglot": (32_460, 1_623), "mini_imagenet": (60_000, 100)}
    for release in RELEASES.values():
        assert sum(n for _, n in release.counts.splits) == release.counts.images
        assert [s for s, _ in release.counts.splits] == list(release.reader_splits)


@pytest.mark.parametrize("name, removed, archive", [
    ("cars196", "cars196/cars_annos.mat", "cars_annos.mat"),
    ("stanford_dogs", "stanford_dogs/test_list.mat", "lists.tar"),
    ("omniglot", "omniglot/images_evaluation", "images_evaluation.zip"),
    ("cifar100", "cifar-100-python/meta", "cifar-100-python.tar.gz"),
    ("tiny_imagenet", "tiny-imagenet-200/val/val_annotations.txt", "tiny-imagenet-200.zip"),
])
def test_a_missing_file_of_the_layout_is_named_with_its_archive(root, name, removed, archive):
    target = root / removed
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    (report,) = check_data_root(root, [name], official=False, progress=False)
    assert not report.ready and len(report.problems) == 1
    assert f"missing {removed}" in problems(report)
    assert f"python -m rkd.data prepare {name} {archive} {root}" in problems(report)


def test_a_missing_image_is_named(root):
    gone = root / "CUB_200_2011/images/002.Bird_2/Bird_2_0001_1004.jpg"
    gone.unlink()
    (report,) = check_data_root(root, ["cub200"], official=False, progress=False)
    assert report.missing == [gone]
    assert "1 of the 8 images it lists is missing: CUB_200_2011/images/002.Bird_2/Bird_2_0001_1004.jpg" in (
        problems(report))


def test_a_missing_dataset_folder_says_where_and_what_for(tmp_path):
    (report,) = check_data_root(tmp_path, ["sop"], progress=False)
    assert not report.ready and report.images is None
    assert f"{tmp_path / 'Stanford_Online_Products'} not found (needed by Tables 2 and 3; about it: https://cvgl" in (
        problems(report))
    assert "Stanford_Online_Products.zip" in problems(report)


def test_extra_images_are_reported(root):
    wnid = (root / "tiny-imagenet-200/wnids.txt").read_text().split()[0]
    write_image(root / f"tiny-imagenet-200/train/{wnid}/images/{wnid}_extra.JPEG", seed=1, size=(64, 64))
    report = check_dataset(root, "tiny_imagenet", official=False, expected=SMALL_COUNTS["tiny_imagenet"],
                           progress=False)
    assert "holds 10 images" in problems(report) and "1 more than the release" in problems(report)
    assert "train 7 of 6" in problems(report)


def test_an_image_that_does_not_decode_is_named(root):
    image = root / "Stanford_Online_Products/chair_final/111003_1.JPG"
    image.write_bytes(image.read_bytes()[:60])  # truncated: the header survives, the pixels do not
    report = check_dataset(root, "sop", official=False, workers=2, progress=False)
    assert report.unreadable == [image]
    assert "1 image cannot be decoded (corrupt or truncated): Stanford_Online_Products/chair_final/111003_1.JPG" in (
        problems(report))
    assert check_dataset(root, "sop", official=False, decode=False, progress=False).ready


def test_a_malformed_index_is_a_reader_failure(root):
    (root / "CUB_200_2011/images.txt").write_text("1\n")
    (report,) = check_data_root(root, ["cub200"], official=False, progress=False)
    assert problems(report).startswith("its reader fails: cub200: images.txt line 1 has 1 fields")


def test_check_folder_checks_a_folder_anywhere(tmp_path):
    top = make_cub200_tree(tmp_path / "somewhere")
    assert check_folder("cub200", top, official=False, progress=False).ready


def test_unknown_names_fail_before_any_work(pristine):
    with pytest.raises(ValueError, match="unknown dataset 'cub'; the paper's datasets are: cub200, cars196"):
        check_data_root(pristine, ["cub200", "cub"])


def test_command_line_prints_a_line_per_dataset_and_fails_when_one_is_not_ready(pristine, capsys, monkeypatch):
    assert main(["check", str(pristine), "cub200", "sop", "--no-decode"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("checking 2 dataset(s) under") and len(lines) == 3
    assert lines[1].startswith("cub200         NOT READY  holds 8 images") and lines[2].startswith("sop ")
    monkeypatch.setitem(check.OFFICIAL_COUNTS, "cub200", SMALL_COUNTS["cub200"])
    assert main(["check", str(pristine), "cub200"]) == 0
    assert "cub200         ready      8 images in 4 classes" in capsys.readouterr().out
    assert main(["check", str(pristine), "nonsense"]) == 2
