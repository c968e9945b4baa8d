"""rkd.data.prepare_archive and `python -m rkd.data prepare` on small fake archives built here:
a good archive goes into place; a truncated, corrupt or wrong one is refused and the data
root is left byte for byte as it was. The official checksum table is swapped for the fake
archives' checksums (monkeypatch), since the real archives are gigabytes."""
import dataclasses
import hashlib
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from fixtures_data import (
    DATA_ROOT_COUNTS,
    make_cars196_tree,
    make_cub200_tree,
    make_mini_imagenet_tree,
    make_omniglot_tree,
)

from rkd.data import ArchiveError, ReleaseCounts, check_dataset, prepare_archive, releases
from rkd.data.__main__ import main
from rkd.data.releases import RELEASES, Checksum

CUB_COUNTS = ReleaseCounts(*DATA_ROOT_COUNTS["cub200"])


def snapshot(root: Path):
    """Every path under ``root`` with its bytes (None when ``root`` does not exist)."""
    if not root.exists():
        return None
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else "folder") for p in sorted(root.rglob("*"))}


def make_tar(path: Path, folder: Path, entries, mode="w:gz") -> Path:
    with tarfile.open(path, mode) as bundle:
        for entry in entries:
            bundle.add(folder / entry, arcname=entry)
    return path


def make_zip(path: Path, folder: Path, entries, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for entry in entries:
            source = folder / entry
            for file in [source] if source.is_file() else sorted(source.rglob("*")):
                bundle.write(file, prefix + str(file.relative_to(folder)))
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def use_checksum(monkeypatch, dataset: str, archive: str, digest: str | None) -> None:
    """Make ``digest`` (an MD5, or None for no published checksum) the official checksum of ``archive``."""
    release = RELEASES[dataset]
    checksum = None if digest is None else Checksum("md5", digest, "this test")
    archives = tuple(dataclasses.replace(a, checksum=checksum) if a.name == archive else a for a in release.archives)
    monkeypatch.setitem(releases.RELEASES, dataset, dataclasses.replace(release, archives=archives))


@pytest.fixture
def cub_tgz(tmp_path, monkeypatch) -> Path:
    """A fake CUB_200_2011.tgz (the layout, and attributes.txt beside it as in the real one),
    registered as the official archive."""
    source = tmp_path / "source"
    make_cub200_tree(source)
    (source / "attributes.txt").write_text("1 has_bill_shape::dagger\n")
    archive = make_tar(tmp_path / "CUB_200_2011.tgz", source, ["CUB_200_2011", "attributes.txt"])
    use_checksum(monkeypatch, "cub200", "CUB_200_2011.tgz", md5(archive))
    return archive


@pytest.fixture
def data_root(tmp_path) -> Path:
    """A data root that already holds another dataset, so 'unchanged' has something to keep."""
    root = tmp_path / "data"
    make_cars196_tree(root / "cars196")
    return root


def test_a_good_archive_goes_into_place(cub_tgz, data_root):
    result = prepare_archive("cub200", cub_tgz, data_root, progress=False)
    assert result.placed == [data_root / "CUB_200_2011"] and result.left_out == ["attributes.txt"]
    assert result.verified_by.startswith(f"MD5 {md5(cub_tgz)}")
    assert check_dataset(data_root, "cub200", official=False, expected=CUB_COUNTS, progress=False).ready
    assert sorted(p.name for p in data_root.iterdir()) == ["CUB_200_2011", "cars196"]  # no staging folder left


def test_a_renamed_archive_is_recognised_by_its_checksum(cub_tgz, data_root):
    renamed = cub_tgz.rename(cub_tgz.with_name("download (1).tgz"))
    assert prepare_archive("cub200", renamed, data_root, progress=False).archive.name == "CUB_200_2011.tgz"


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_archive_is_refused_by_its_checksum(cub_tgz, data_root, keep):
    before = snapshot(data_root)
    data = cub_tgz.read_bytes()
    cub_tgz.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ArchiveError, match=r"its MD5 is [0-9a-f]{32}, the official CUB_200_2011.tgz's is .* "
                                           r"truncated, corrupt or another file: download it again"):
        prepare_archive("cub200", cub_tgz, data_root, progress=False)
    assert snapshot(data_root) == before


def test_a_corrupt_archive_is_refused_by_its_checksum(cub_tgz, data_root, monkeypatch):
    before = snapshot(data_root)
    use_checksum(monkeypatch, "cub200", "CUB_200_2011.tgz", "0" * 32)  # the published one differs
    with pytest.raises(ArchiveError, match="the official CUB_200_2011.tgz's is 0{32} .published by this test"):
        prepare_archive("cub200", cub_tgz, data_root, progress=False)
    assert snapshot(data_root) == before


@pytest.mark.parametrize("kind", ["tgz", "zip"])
def test_without_a_checksum_a_truncated_archive_is_refused_when_extracted(tmp_path, data_root, monkeypatch, kind):
    source = make_omniglot_tree(tmp_path / "source")
    if kind == "tgz":  # a .tgz named as the CUB archive
        make_cub200_tree(source)
        archive, dataset = make_tar(tmp_path / "CUB_200_2011.tgz", source, ["CUB_200_2011"]), "cub200"
    else:
        archive, dataset = make_zip(tmp_path / "images_background.zip", source, ["images_background"]), "omniglot"
    use_checksum(monkeypatch, dataset, archive.name, None)
    archive.write_bytes(archive.read_bytes()[:-200])
    before = snapshot(data_root)
    with pytest.raises(ArchiveError, match="cannot extract .* truncated or corrupt: download it again"):
        prepare_archive(dataset, archive, data_root, progress=False)
    assert snapshot(data_root) == before


def test_an_archive_of_another_dataset_is_refused(tmp_path, data_root, monkeypatch):
    source = make_omniglot_tree(tmp_path / "source")
    archive = make_zip(tmp_path / "images_background.zip", source, ["images_background"])
    with pytest.raises(ArchiveError, match="is none of the official archives of cub200 .CUB_200_2011.tgz."):
        prepare_archive("cub200", archive, data_root, progress=False)
    # the right name with the wrong contents: its checksum is not the official one
    wrong = archive.rename(tmp_path / "CUB_200_2011.tgz")
    with pytest.raises(ArchiveError, match="its MD5 is"):
        prepare_archive("cub200", wrong, data_root, progress=False)
    # and with no checksum to compare, its contents give it away
    use_checksum(monkeypatch, "cub200", "CUB_200_2011.tgz", None)
    before = snapshot(data_root)
    with pytest.raises(ArchiveError):
        prepare_archive("cub200", wrong, data_root, progress=False)
    assert snapshot(data_root) == before


def test_an_existing_destination_is_never_overwritten(cub_tgz, data_root):
    make_cub200_tree(data_root, num_classes=2)
    before = snapshot(data_root)
    with pytest.raises(ArchiveError, match="CUB_200_2011 already exists: move it away first"):
        prepare_archive("cub200", cub_tgz, data_root, progress=False)
    assert snapshot(data_root) == before


def test_a_refused_archive_leaves_no_new_data_root_behind(cub_tgz, tmp_path, monkeypatch):
    use_checksum(monkeypatch, "cub200", "CUB_200_2011.tgz", None)  # refused while extracting, after the mkdir
    cub_tgz.write_bytes(cub_tgz.read_bytes()[:-200])
    with pytest.raises(ArchiveError, match="cannot extract"):
        prepare_archive("cub200", cub_tgz, tmp_path / "new" / "data", progress=False)
    assert not (tmp_path / "new").exists()


def test_the_archives_of_one_dataset_fill_its_folder_one_after_another(tmp_path, monkeypatch):
    source = make_cars196_tree(tmp_path / "source")
    images = make_tar(tmp_path / "car_ims.tgz", source, ["car_ims"])
    annotations = source / "cars_annos.mat"
    use_checksum(monkeypatch, "cars196", "car_ims.tgz", md5(images))
    use_checksum(monkeypatch, "cars196", "cars_annos.mat", md5(annotations))
    root = tmp_path / "data"
    assert prepare_archive("cars196", images, root, progress=False).placed == [root / "cars196/car_ims"]
    assert prepare_archive("cars196", annotations, root, progress=False).placed == [root / "cars196/cars_annos.mat"]
    assert check_dataset(root, "cars196", official=False, progress=False).ready


def test_omniglot_zips_go_side_by_side(tmp_path, monkeypatch):
    source = make_omniglot_tree(tmp_path / "source")
    root = tmp_path / "data"
    for part in ("images_background", "images_evaluation"):
        archive = make_zip(tmp_path / f"{part}.zip", source, [part])
        use_checksum(monkeypatch, "omniglot", archive.name, md5(archive))
        prepare_archive("omniglot", archive, root, progress=False)
    assert sorted(p.name for p in (root / "omniglot").iterdir()) == ["images_background", "images_evaluation"]
    assert check_dataset(root, "omniglot", official=False, progress=False).ready


def test_an_archive_without_a_published_checksum_is_checked_by_its_contents(tmp_path):
    source = make_mini_imagenet_tree(tmp_path / "source")
    entries = ["images", "train.csv", "val.csv", "test.csv"]
    archive = make_zip(tmp_path / "mini-imagenet.zip", source, entries, prefix="mini-imagenet/")
    counts = ReleaseCounts(*DATA_ROOT_COUNTS["mini_imagenet"])
    root = tmp_path / "data"
    with pytest.raises(ArchiveError, match="not miniImageNet .* as released: holds 21 images in 7 classes where the "
                                           "official release has 60,000"):
        prepare_archive("mini_imagenet", archive, root, progress=False)
    assert not root.exists()
    result = prepare_archive("mini_imagenet", archive, root, expected=counts, progress=False)
    assert result.verified_by.startswith("no published checksum: layout, counts (21 images in 7 classes)")
    assert sorted(p.name for p in (root / "mini_imagenet").iterdir()) == sorted(entries)


def test_an_archive_without_a_checksum_and_a_broken_image_is_refused(tmp_path):
    source = make_mini_imagenet_tree(tmp_path / "source")
    broken = sorted((source / "images").iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:50])
    archive = make_tar(tmp_path / "mini.tar", source, ["images", "train.csv", "val.csv", "test.csv"], mode="w")
    with pytest.raises(ArchiveError, match=f"1 image cannot be decoded .*{broken.name}"):
        prepare_archive("mini_imagenet", archive, tmp_path / "data",
                        expected=ReleaseCounts(*DATA_ROOT_COUNTS["mini_imagenet"]), progress=False)
    assert not (tmp_path / "data").exists()


def test_command_line_prepare(cub_tgz, data_root, capsys):
    assert main(["prepare", "cub200", str(cub_tgz), str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "verified: MD5" in out and "left out (not part of the layout the readers use): attributes.txt" in out
    assert "cub200         NOT READY  holds 8 images" in out  # the fake archive is not the official release
    shutil.rmtree(data_root / "CUB_200_2011")
    cub_tgz.write_bytes(cub_tgz.read_bytes()[:-10])
    before = snapshot(data_root)
    assert main(["prepare", "cub200", str(cub_tgz), str(data_root)]) == 1
    assert capsys.readouterr().err.startswith("refused: ")
    assert snapshot(data_root) == before


# ---------------------------------------------------------------- the published checksums


def test_checksums_are_well_formed_and_sourced():
    lengths = {"md5": 32, "sha256": 64}
    for release in RELEASES.values():
        for archive in release.archives:
            if archive.name is None:
                assert archive.checksum is None  # miniImageNet has no official archive
                continue
            checksum = archive.checksum
            assert len(checksum.digest) == lengths[checksum.algorithm] and int(checksum.digest, 16) >= 0
            assert checksum.source and archive.url.endswith(archive.name)


def test_checksums_agree_with_torchvisions():
    from torchvision.datasets import CIFAR100, Omniglot

    assert RELEASES["cifar100"].archive("cifar-100-python.tar.gz").checksum.digest == CIFAR100.tgz_md5
    for part, digest in Omniglot.zips_md5.items():
        assert RELEASES["omniglot"].archive(f"{part}.zip").checksum.digest == digest


def test_the_getting_the_data_page_gives_every_archive_its_checksum_and_counts():
    page = (Path(__file__).parents[1] / "book" / "data.md").read_text()
    spelled = {"md5": "MD5", "sha256": "SHA-256"}
    for release in RELEASES.values():
        assert f"(`{release.name}`;" in page, release.name
        for number in (release.counts.classes, *(n for _, n in release.counts.splits)):
            assert f"{number:,}" in page, (release.name, number)
        for archive in release.archives:
            if archive.name:
                assert f"[`{archive.name}`]({archive.url})" in page, archive.name
                assert f"{spelled[archive.checksum.algorithm]} `{archive.checksum.digest}`" in page, archive.name
