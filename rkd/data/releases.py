"""The official releases of the paper's datasets: where each lies under ``data_root``, what
it holds, which archives it comes from and their published checksums.

:func:`rkd.data.check.check_data_root` compares a user's tree with :data:`RELEASES`;
:func:`rkd.data.prepare.prepare_archive` extracts an archive of it into place. Every
checksum names where it was published: only CIFAR's page publishes its own (an MD5 per
version); the others come from the libraries and code that download the same files
(torchvision, TensorFlow Datasets, ContinualAI's avalanche, the RKD authors' own code),
each for the file at the URL given here.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Checksum", "Archive", "ReleaseCounts", "Release", "RELEASES", "OFFICIAL_COUNTS", "get_release"]

_TORCHVISION = "torchvision.datasets ({} in torchvision/datasets/{}.py)"
_TFDS = "TensorFlow Datasets (tensorflow_datasets/url_checksums/{}.txt, with the size)"
_AVALANCHE = "ContinualAI/avalanche ({})"
_RKD_AUTHORS = "the RKD authors' code (lenscloth/RKD, {})"


@dataclass(frozen=True)
class Checksum:
    """A digest of an official archive and where it was published."""

    algorithm: str  # a hashlib name: "md5" or "sha256"
    digest: str
    source: str


@dataclass(frozen=True)
class Archive:
    """One file of an official release, as downloaded.

    ``places`` are the entries it extracts (its top level; a plain file is its own
    entry) that are moved into ``data_root / into``. ``name`` is the official file name,
    or None for a dataset with no official archive (any tar or zip holding ``places`` is
    accepted, checked by its structure and counts instead of a checksum).
    """

    name: str | None
    url: str
    into: str
    places: tuple[str, ...]
    checksum: Checksum | None = None
    size: int | None = None  # bytes, where a source records it (shown when the checksum differs)

    @property
    def is_plain_file(self) -> bool:
        """A file used as downloaded (an annotation .mat), not an archive to extract."""
        return self.name is not None and not self.name.endswith((".tgz", ".tar", ".tar.gz", ".zip"))


@dataclass(frozen=True)
class ReleaseCounts:
    """What the official release holds: images and classes in all, and images per split of
    the reader (``splits``: ``(split, images)`` pairs)."""

    images: int
    classes: int
    splits: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Release:
    """One dataset of the paper as its official archives extract under ``data_root``.

    ``folder`` is where the reader (registry name ``name``) is pointed; ``required``
    pairs each entry the layout needs (relative to ``folder``) with the archive that
    provides it; ``reader_options`` are what the check passes to the reader, which it
    builds for each of ``reader_splits``.
    """

    name: str
    title: str
    folder: str
    counts: ReleaseCounts
    required: tuple[tuple[str, str], ...]
    archives: tuple[Archive, ...]
    homepage: str
    terms: str
    used_by: str
    reader_splits: tuple[str, ...] = ("train", "test")
    reader_options: tuple[tuple[str, object], ...] = ()
    #: the reader's option that compares its files with the official checksums, if it has one
    checksum_option: str | None = None

    def archive(self, name: str) -> Archive | None:
        """The archive called ``name``, or None."""
        return next((a for a in self.archives if a.name == name), None)


_IMAGENET_TERMS = ("its images come from ImageNet, whose terms of access (https://www.image-net.org/download.php) "
                   "allow non-commercial research and educational use only")

#: dataset name -> its :class:`rkd.data.releases.Release`: folder under ``data_root``, counts,
#: archives and their checksums, terms of use
RELEASES: dict[str, Release] = {r.name: r for r in (
    Release(
        "cub200", "CUB-200-2011", "CUB_200_2011",
        ReleaseCounts(11_788, 200, (("train", 5_864), ("test", 5_924))),
        (("images.txt", "CUB_200_2011.tgz"), ("image_class_labels.txt", "CUB_200_2011.tgz"),
         ("classes.txt", "CUB_200_2011.tgz"), ("images", "CUB_200_2011.tgz")),
        (Archive("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz", "",
                 ("CUB_200_2011",),
                 Checksum("md5", "97eceeb196236b17998738112f37df78",
                          _AVALANCHE.format("avalanche/benchmarks/datasets/cub200/cub200.py") + "; the same MD5 in "
                          + _RKD_AUTHORS.format("dataset/cub200.py"))),),
        "https://www.vision.caltech.edu/datasets/cub_200_2011/",
        "no licence published; the archive's README asks to cite the dataset (Wah et al., 2011)",
        "Tables 1-3, Figures 3 and 4"),
    Release(
        "cars196", "Cars196 (Stanford Cars, all-images release)", "cars196",
        ReleaseCounts(16_185, 196, (("train", 8_054), ("test", 8_131))),
        (("cars_annos.mat", "cars_annos.mat"), ("car_ims", "car_ims.tgz")),
        (Archive("car_ims.tgz", "http://ai.stanford.edu/~jkrause/car196/car_ims.tgz", "cars196", ("car_ims",),
                 Checksum("md5", "d5c8f0aa497503f355e17dc7886c3f14", _RKD_AUTHORS.format("dataset/cars196.py"))),
         Archive("cars_annos.mat", "http://ai.stanford.edu/~jkrause/car196/cars_annos.mat", "cars196",
                 ("cars_annos.mat",),
                 Checksum("md5", "b407c6086d669747186bd1d764ff9dbc", _RKD_AUTHORS.format("dataset/cars196.py")))),
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
        "no licence published on the dataset's page; cite Krause et al. (2013)",
        "Tables 1-3, Figures 3 and 4"),
    Release(
        "sop", "Stanford Online Products", "Stanford_Online_Products",
        ReleaseCounts(120_053, 22_634, (("train", 59_551), ("test", 60_502))),
        (("Ebay_train.txt", "Stanford_Online_Products.zip"), ("Ebay_test.txt", "Stanford_Online_Products.zip")),
        (Archive("Stanford_Online_Products.zip", "ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip", "",
                 ("Stanford_Online_Products",),
                 Checksum("sha256", "b04fa78210e69fab050ce73939550e1cd0f96890bdd98ec9fee732c3b756ef48",
                          _TFDS.format("stanford_online_products")),
                 size=3_083_860_082),),
        "https://cvgl.stanford.edu/projects/lifted_struct/",
        "no licence published on the dataset's page; cite Oh Song et al. (2016)",
        "Tables 2 and 3"),
    Release(
        "stanford_dogs", "Stanford Dogs", "stanford_dogs",
        ReleaseCounts(20_580, 120, (("train", 12_000), ("test", 8_580))),
        (("train_list.mat", "lists.tar"), ("test_list.mat", "lists.tar"), ("Images", "images.tar")),
        (Archive("images.tar", "http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar", "stanford_dogs",
                 ("Images",),
                 Checksum("sha256", "a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58",
                          _TFDS.format("stanford_dogs")),
                 size=793_579_520),
         Archive("lists.tar", "http://vision.stanford.edu/aditya86/ImageNetDogs/lists.tar", "stanford_dogs",
                 ("file_list.mat", "train_list.mat", "test_list.mat"),
                 Checksum("sha256", "34b47cacd9a98b5d150e084f24d29391c084c55272295ec65c85651bc35f4d6c",
                          _TFDS.format("stanford_dogs")),
                 size=481_280)),
        "http://vision.stanford.edu/aditya86/ImageNetDogs/",
        f"no licence published on the dataset's page; {_IMAGENET_TERMS}; cite Khosla et al. (2011)",
        "Figure 3"),
    Release(
        "cifar100", "CIFAR-100 (python version)", "cifar-100-python",
        ReleaseCounts(60_000, 100, (("train", 50_000), ("test", 10_000))),
        (("train", "cifar-100-python.tar.gz"), ("test", "cifar-100-python.tar.gz"),
         ("meta", "cifar-100-python.tar.gz")),
        (Archive("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "",
                 ("cifar-100-python",),
                 Checksum("md5", "eb9058c3a382ffc7106e4002c42a8d85",
                          "the dataset's page (its table of versions) and "
                          + _TORCHVISION.format("CIFAR100.tgz_md5", "cifar"))),),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        "no licence published; the dataset's page asks to cite Krizhevsky (2009), its tech report",
        "Table 4, Figure 3",
        checksum_option="verify_checksums"),
    Release(
        "tiny_imagenet", "Tiny ImageNet", "tiny-imagenet-200",
        ReleaseCounts(110_000, 200, (("train", 100_000), ("test", 10_000))),
        (("wnids.txt", "tiny-imagenet-200.zip"), ("train", "tiny-imagenet-200.zip"),
         ("val/images", "tiny-imagenet-200.zip"), ("val/val_annotations.txt", "tiny-imagenet-200.zip")),
        (Archive("tiny-imagenet-200.zip", "http://cs231n.stanford.edu/tiny-imagenet-200.zip", "",
                 ("tiny-imagenet-200",),
                 Checksum("md5", "90528d7ca1a48142e341f4ef8d21d0de",
                          _AVALANCHE.format("avalanche/benchmarks/datasets/tiny_imagenet/tiny_imagenet.py"))),),
        "http://cs231n.stanford.edu/",
        f"no licence published; {_IMAGENET_TERMS}",
        "Table 4"),
    Release(
        "omniglot", "Omniglot", "omniglot",
        ReleaseCounts(32_460, 1_623, (("train", 24_000), ("test", 8_460))),
        (("images_background", "images_background.zip"), ("images_evaluation", "images_evaluation.zip")),
        (Archive("images_background.zip", "https://github.com/brendenlake/omniglot/raw/master/python/"
                 "images_background.zip", "omniglot", ("images_background",),
                 Checksum("md5", "68d2efa1b9178cc56df9314c21c6e718", _TORCHVISION.format("Omniglot.zips_md5",
                                                                                           "omniglot")),
                 size=9_464_212),
         Archive("images_evaluation.zip", "https://github.com/brendenlake/omniglot/raw/master/python/"
                 "images_evaluation.zip", "omniglot", ("images_evaluation",),
                 Checksum("md5", "6b91aef0f799c5bb55b94e3f2daec811", _TORCHVISION.format("Omniglot.zips_md5",
                                                                                           "omniglot")),
                 size=6_462_886)),
        "https://github.com/brendenlake/omniglot",
        "the repository that publishes it carries the MIT licence; it asks to cite Lake et al. (2015)",
        "Table 5",
        reader_options=(("rotations", (0,)),)),  # count characters, not rotated classes
    Release(
        "mini_imagenet", "miniImageNet (Ravi & Larochelle split)", "mini_imagenet",
        ReleaseCounts(60_000, 100, (("train", 38_400), ("val", 9_600), ("test", 12_000))),
        (("train.csv", "an archive"), ("val.csv", "an archive"), ("test.csv", "an archive"),
         ("images", "an archive")),
        (Archive(None, "https://github.com/twitter/meta-learning-lstm/tree/master/data/miniImagenet", "mini_imagenet",
                 ("images", "train.csv", "val.csv", "test.csv")),),
        "https://github.com/twitter/meta-learning-lstm",
        f"no official archive and no licence published; {_IMAGENET_TERMS}",
        "Table 6",
        reader_splits=("train", "val", "test")),
)}

#: dataset name -> the counts of its official release
OFFICIAL_COUNTS: dict[str, ReleaseCounts] = {name: release.counts for name, release in RELEASES.items()}


def get_release(name: str) -> Release:
    """The :class:`Release` of dataset ``name``, or a ValueError listing the known ones."""
    if name not in RELEASES:
        raise ValueError(f"unknown dataset {name!r}; the paper's datasets are: {', '.join(RELEASES)}")
    return RELEASES[name]
