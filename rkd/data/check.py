"""Is a ``data_root`` ready? Each dataset's layout, counts and images, checked before training.

:func:`check_data_root` looks for each of the paper's datasets where the readers look
(:data:`rkd.data.releases.RELEASES`: ``<data_root>/CUB_200_2011``, ``<data_root>/cars196``,
...) and checks, in order: the folder and the files of its layout (a missing file is
named, with the archive that provides it); that its reader reads it (index files
well formed); that every image it lists is there; its counts of images and classes
against the official release (skippable for small generated trees); and that every
image decodes (in parallel threads, with a progress bar on the terminal). Each dataset
gets a :class:`DatasetReport`: ready, or the problems found and how to fix each.

``python -m rkd.data check DATA_ROOT [DATASET ...]`` prints one line per dataset and
exits non-zero when one is not ready.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from rkd.data.common import DatasetLayoutError
from rkd.data.registry import get_dataset
from rkd.data.releases import OFFICIAL_COUNTS, RELEASES, Release, ReleaseCounts, get_release
from rkd.progress import progress_bar

__all__ = ["DatasetReport", "DataNotReadyError", "check_data_root", "check_dataset", "check_folder",
           "layout_problems", "prepare_hint"]

#: how many missing or unreadable files a report names (the count says how many more)
SHOWN = 5


class DataNotReadyError(DatasetLayoutError):
    """A run's datasets are not ready under the data root: the message has one line per
    dataset (what is missing and how to fix it), as ``python -m rkd.data check`` prints."""


@dataclass
class DatasetReport:
    """What :func:`check_dataset` found for one dataset.

    ``problems`` are sentences, each saying what is wrong and how to fix it; the dataset
    is ``ready`` when there is none. ``images`` and ``classes`` are what its reader
    found (None when it could not read the dataset); ``missing`` lists image files its
    index names that are not there, ``unreadable`` those that do not decode.
    """

    name: str
    title: str
    folder: Path
    problems: list[str] = field(default_factory=list)
    images: int | None = None
    classes: int | None = None
    missing: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Whether the check found no problem (training can read this dataset)."""
        return not self.problems

    def line(self) -> str:
        """One line: ``name  ready  N images in C classes (folder)`` or ``name  NOT READY  problems``."""
        if self.ready:
            return (f"{self.name:<14} ready      {self.images:,} images in {self.classes:,} classes "
                    f"({self.folder})")
        return f"{self.name:<14} NOT READY  " + " | ".join(self.problems)

    def __str__(self) -> str:
        return self.line()


def prepare_hint(release: Release, root: str | os.PathLike, archive: str | None = None) -> str:
    """How to get (one archive of) ``release`` into ``root``: the download and the prepare command."""
    chosen = [a for a in release.archives if archive is None or a.name == archive] or list(release.archives)
    if chosen[0].name is None:
        return (f"build it from ILSVRC-2012 with the split files of {chosen[0].url} (there is no official "
                f"archive), pack images/ and the three .csv files into a .tar or .zip, and run "
                f"`python -m rkd.data prepare {release.name} ARCHIVE {root}`")
    commands = "; ".join(f"`python -m rkd.data prepare {release.name} {a.name} {root}` ({a.url})" for a in chosen)
    return f"download and prepare: {commands}"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _named(paths: Sequence[Path], root: Path) -> str:
    shown = ", ".join(_relative(p, root) for p in paths[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN:,} more" if len(paths) > SHOWN else "")


def _layout_problems(release: Release, folder: Path, root: Path) -> list[str]:
    """The folder and the entries of its layout: one problem per archive that would provide the missing ones."""
    if not folder.is_dir():
        return [f"{folder} not found (needed by {release.used_by}; about it: {release.homepage}); "
                f"{prepare_hint(release, root)}"]
    by_archive: dict[str, list[Path]] = {}
    for entry, archive in release.required:
        if not (folder / entry).exists():
            by_archive.setdefault(archive, []).append(folder / entry)
    return [f"missing {_named(paths, root)}; {prepare_hint(release, root, archive)}"
            for archive, paths in by_archive.items()]


def layout_problems(name: str, root: str | os.PathLike) -> list[str]:
    """What is missing from dataset ``name``'s layout under ``root`` (empty when nothing is), each
    with the archive that provides it and the command that puts it in place."""
    release, root = get_release(name), Path(root).expanduser()
    return _layout_problems(release, root / release.folder, root)


def _read_splits(release: Release, folder: Path, official: bool) -> dict:
    """The reader's dataset for each split (raises what the reader raises)."""
    options = dict(release.reader_options)
    if release.checksum_option is not None:
        options[release.checksum_option] = official
    return {split: get_dataset(release.name, folder, split, **options) for split in release.reader_splits}


def _inventory(splits: Mapping) -> tuple[list[Path] | None, int, int, dict[str, int]]:
    """(unique image files or None for in-memory data, images, classes, images per split)."""
    files: dict[Path, None] = {}
    classes: set = set()
    per_split = {}
    for split, dataset in splits.items():
        paths = getattr(dataset, "paths", None)
        if paths is None:
            per_split[split] = len(dataset)
        else:
            unique = dict.fromkeys(paths)
            per_split[split] = len(unique)
            files.update(unique)
        classes.update(getattr(dataset, "class_ids", None) or dataset.classes)
    has_files = any(getattr(d, "paths", None) is not None for d in splits.values())
    images = len(files) if has_files else sum(per_split.values())
    return (list(files) if has_files else None), images, len(classes), per_split


def _count_problem(release: Release, expected: ReleaseCounts, images: int, classes: int,
                   per_split: Mapping[str, int], root: Path) -> str | None:
    splits = dict(expected.splits)
    wrong = [f"{split} {per_split.get(split, 0):,} of {n:,}" for split, n in splits.items()
             if per_split.get(split, 0) != n]
    if images == expected.images and classes == expected.classes and not wrong:
        return None
    difference = images - expected.images
    extra = (f", {difference:,} more than the release: files or list lines that are not part of it"
             if difference > 0 else f", {-difference:,} missing" if difference < 0 else "")
    by_split = f" (images per split: {', '.join(wrong)})" if wrong else ""
    return (f"holds {images:,} images in {classes:,} classes where the official release has "
            f"{expected.images:,} in {expected.classes:,}{extra}{by_split}; move this folder away, then "
            f"{prepare_hint(release, root)}")


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()  # decodes every pixel: a truncated file fails here, not at open
        return True
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def _undecodable(paths: Sequence[Path], workers: int, progress: bool, desc: str) -> list[Path]:
    """The files of ``paths`` that PIL cannot decode, read by ``workers`` threads (PIL's
    decoders release the GIL, so threads decode in parallel)."""
    bad = []
    bar = progress_bar(len(paths), desc=desc, enabled=progress)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, ok in zip(paths, pool.map(_decodes, paths)):
            bar.update(1)
            if not ok:
                bad.append(path)
    bar.close()
    return bad


def default_workers() -> int:
    """Threads for decoding: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def check_dataset(root: str | os.PathLike, name: str, *, official: bool = True,
                  expected: ReleaseCounts | None = None, decode: bool = True, workers: int | None = None,
                  progress: bool = True) -> DatasetReport:
    """Check dataset ``name`` where the readers look for it under ``root`` (see the module docstring).

    ``official``: also compare files with their official checksums where the reader can
    (CIFAR-100's pickles). ``expected``: the counts to compare with (default: the
    official release's when ``official``, none otherwise). ``decode``: decode every image.
    """
    root = Path(root).expanduser()
    return check_folder(name, root / get_release(name).folder, root=root, official=official, expected=expected,
                        decode=decode, workers=workers, progress=progress)


def check_folder(name: str, folder: str | os.PathLike, *, root: str | os.PathLike | None = None,
                 official: bool = True, expected: ReleaseCounts | None = None, decode: bool = True,
                 workers: int | None = None, progress: bool = True) -> DatasetReport:
    """Check dataset ``name`` in ``folder`` itself (what :func:`check_dataset` does for
    ``root / release.folder``); ``root`` is the data root the messages and commands name."""
    release = get_release(name)
    folder = Path(folder).expanduser()
    root = folder.parent if root is None else Path(root).expanduser()
    report = DatasetReport(name, release.title, folder)
    report.problems = _layout_problems(release, folder, root)
    if report.problems:
        return report
    try:
        splits = _read_splits(release, folder, official)
    except (OSError, ValueError, KeyError) as error:  # DatasetLayoutError is an OSError
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        report.problems.append(f"its reader fails: {first}; move this folder away, then {prepare_hint(release, root)}")
        return report
    files, report.images, report.classes, per_split = _inventory(splits)
    if files is not None:
        report.missing = [path for path in files if not path.is_file()]
        if report.missing:
            verb = "is" if len(report.missing) == 1 else "are"
            report.problems.append(f"{len(report.missing):,} of the {len(files):,} images it lists {verb} missing: "
                                   f"{_named(report.missing, root)}; move this folder away, then "
                                   f"{prepare_hint(release, root)}")
    if expected is None and official:
        expected = OFFICIAL_COUNTS[name]
    if expected is not None:
        problem = _count_problem(release, expected, report.images, report.classes, per_split, root)
        if problem:
            report.problems.append(problem)
    if decode and files is not None:
        absent = set(report.missing)
        present = [path for path in files if path not in absent]
        report.unreadable = _undecodable(present, workers or default_workers(), progress,
                                         f"{name}: decoding {len(present):,} images")
        if report.unreadable:
            noun = "image" if len(report.unreadable) == 1 else "images"
            report.problems.append(f"{len(report.unreadable):,} {noun} cannot be decoded (corrupt or truncated): "
                                   f"{_named(report.unreadable, root)}; move this folder away, then "
                                   f"{prepare_hint(release, root)}")
    return report


def check_data_root(root: str | os.PathLike, names: Iterable[str] | None = None, *, official: bool = True,
                    counts: Mapping[str, ReleaseCounts] | None = None, decode: bool = True,
                    workers: int | None = None, progress: bool = True) -> list[DatasetReport]:
    """Check the paper's datasets ``names`` (default: all eight) under ``root``.

    Returns one :class:`DatasetReport` per dataset, in the order asked; ``all(r.ready for
    r in reports)`` says whether training can start. ``official=True`` (the default)
    compares each with its official release: counts of images and classes (per split
    too) and, where the reader can, file checksums. For a small generated tree pass
    ``official=False`` (no counts, no checksums) or your own ``counts``
    (``{name: ReleaseCounts(...)}``, which replace the official ones for those names).
    ``decode=False`` skips decoding every image (minutes for the largest sets).
    """
    names = list(RELEASES) if names is None else list(names)
    for name in names:
        get_release(name)  # unknown names fail before any work
    counts = dict(counts or {})
    return [check_dataset(root, name, official=official, expected=counts.get(name), decode=decode,
                          workers=workers, progress=progress) for name in names]
