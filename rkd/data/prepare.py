"""Extracting a downloaded official archive into a ``data_root``, all or nothing.

:func:`prepare_archive` recognises the archive (by its file name, else by its
checksum), verifies its published checksum before touching anything
(:data:`rkd.data.releases.RELEASES` says where each was published), extracts it into a
hidden temporary folder inside ``data_root`` (on the same filesystem, so that putting
it in place is a rename), moves the entries the layout needs into place and removes
the rest. An archive with no published checksum (miniImageNet has no official one) is
verified by the structure, counts and images of what it extracted instead. A corrupt,
truncated or wrong archive is refused with an :class:`ArchiveError` and ``data_root``
is left as it was, byte for byte.

``python -m rkd.data prepare DATASET ARCHIVE DATA_ROOT`` does the same from the shell.
"""
from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from rkd.data.check import check_folder
from rkd.data.releases import Archive, Release, ReleaseCounts, get_release
from rkd.progress import progress_bar

__all__ = ["ArchiveError", "PrepareResult", "prepare_archive", "file_digests"]

#: errors that mean the archive's bytes are bad (not the disk, not the permissions)
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
#: top-level entries some archivers add that are never part of a dataset
_IGNORED_TOP = ("__MACOSX",)


class ArchiveError(ValueError):
    """An archive :func:`prepare_archive` refused: corrupt, truncated, not the expected
    file, or with a destination already taken. ``data_root`` was left unchanged."""


@dataclass
class PrepareResult:
    """What :func:`prepare_archive` put in place."""

    dataset: str
    archive: Archive
    placed: list[Path]
    left_out: list[str] = field(default_factory=list)  # top-level entries of the archive not moved
    verified_by: str = ""  # the checksum it matched, or how it was checked without one


def file_digests(path: Path, algorithms: set[str], progress: bool = True) -> dict[str, str]:
    """Hex digests of the file for each hashlib algorithm, computed in one read."""
    hashers = {name: hashlib.new(name) for name in sorted(algorithms)}
    size = path.stat().st_size
    bar = progress_bar(-(-size // (1 << 20)), desc=f"checksum of {path.name} (MiB)", enabled=progress)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            for hasher in hashers.values():
                hasher.update(block)
            bar.update(1)
    bar.close()
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _expected_names(release: Release) -> str:
    return ", ".join(a.name for a in release.archives if a.name) or "no official archive"


def _identify(release: Release, path: Path, progress: bool) -> tuple[Archive, dict[str, str]]:
    """The archive of ``release`` that ``path`` is (by name, else by checksum) and the digests computed."""
    by_name = release.archive(path.name)
    if by_name is not None:
        return by_name, {}
    unnamed = [a for a in release.archives if a.name is None]
    if unnamed:
        return unnamed[0], {}
    digests = file_digests(path, {a.checksum.algorithm for a in release.archives if a.checksum}, progress)
    for archive in release.archives:
        if archive.checksum and digests.get(archive.checksum.algorithm) == archive.checksum.digest:
            return archive, digests
    computed = ", ".join(f"{name.upper()} {value}" for name, value in digests.items())
    raise ArchiveError(f"{path} is none of the official archives of {release.name} ({_expected_names(release)}): "
                       f"its name is none of theirs and its checksum ({computed}) matches none. Download "
                       f"one of them (see the 'Getting the data' page); nothing was changed")


def _verify_checksum(archive: Archive, path: Path, digests: dict[str, str], progress: bool) -> str:
    expected = archive.checksum
    actual = digests.get(expected.algorithm) or file_digests(path, {expected.algorithm}, progress)[expected.algorithm]
    if actual != expected.digest:
        size = path.stat().st_size
        official_size = f", the official one {archive.size:,}" if archive.size else ""
        raise ArchiveError(f"{path}: its {expected.algorithm.upper()} is {actual}, the official {archive.name}'s "
                           f"is {expected.digest} (published by {expected.source}); the file is {size:,} bytes"
                           f"{official_size}. It is truncated, corrupt or another file: download it again from "
                           f"{archive.url}. Nothing was extracted")
    return f"{expected.algorithm.upper()} {expected.digest} (published by {expected.source})"


def _extract(path: Path, archive: Archive, into: Path, progress: bool) -> None:
    """Extract (or copy, for a plain file) ``path`` into the folder ``into``."""
    into.mkdir()
    if archive.is_plain_file:
        shutil.copyfile(path, into / archive.name)
        return
    name = path.name.lower()
    as_zip = name.endswith(".zip") if archive.name else zipfile.is_zipfile(path)
    if as_zip:
        with zipfile.ZipFile(path) as bundle:
            members = bundle.infolist()
            for member in _counted(members, f"extracting {path.name}", progress):
                bundle.extract(member, into)  # checks each file's CRC; strips absolute paths and '..'
        return
    with tarfile.open(path, "r:*") as bundle:
        members = bundle.getmembers()
        for member in _counted(members, f"extracting {path.name}", progress):
            # the "data" filter refuses absolute paths, '..', links out of the folder and device files
            bundle.extract(member, into, filter="data")


def _counted(items: list, desc: str, progress: bool):
    """Yield ``items`` while a terminal progress bar counts them."""
    bar = progress_bar(len(items), desc=desc, enabled=progress)
    for item in items:
        yield item
        bar.update(1)
    bar.close()


def _locate(extracted: Path, archive: Archive, path: Path) -> Path:
    """The folder holding ``archive.places``: the archive's top level or its single top folder."""
    top = sorted(p for p in extracted.iterdir() if p.name not in _IGNORED_TOP)
    candidates = [extracted] + ([top[0]] if len(top) == 1 and top[0].is_dir() else [])
    for folder in candidates:
        if all((folder / place).exists() for place in archive.places):
            return folder
    holds = ", ".join(p.name for p in top[:10]) or "nothing"
    raise ArchiveError(f"{path} does not hold {', '.join(archive.places)} at its top (it holds {holds}): it is not "
                       f"{archive.name or 'an archive of the expected layout'}. Nothing was changed")


def _move_into_place(source: Path, archive: Archive, destination: Path) -> list[Path]:
    """Rename each entry of ``archive.places`` from ``source`` into ``destination``; undo on failure."""
    moved: list[Path] = []
    try:
        for place in archive.places:
            os.rename(source / place, destination / place)
            moved.append(destination / place)
    except OSError:
        for target in reversed(moved):
            os.rename(target, source / target.name)
        raise
    return moved


def prepare_archive(name: str, archive: str | os.PathLike, root: str | os.PathLike, *,
                    expected: ReleaseCounts | None = None, progress: bool = True) -> PrepareResult:
    """Extract the downloaded ``archive`` of dataset ``name`` into ``root`` (see the module docstring).

    ``expected``: the counts an archive with no published checksum must give (default:
    the official release's). Raises :class:`ArchiveError` (``root`` unchanged) for a
    corrupt, truncated or wrong archive or a destination that already exists.
    """
    release = get_release(name)
    path, root = Path(archive).expanduser(), Path(root).expanduser()
    if not path.is_file():
        raise ArchiveError(f"archive {path} not found (expected a downloaded file: {_expected_names(release)})")
    spec, digests = _identify(release, path, progress)
    verified_by = _verify_checksum(spec, path, digests, progress) if spec.checksum else ""
    destination = root / spec.into
    taken = [destination / place for place in spec.places if (destination / place).exists()]
    if taken:
        raise ArchiveError(f"{', '.join(map(str, taken))} already exists: move it away first (or check it with "
                           f"`python -m rkd.data check {root} {name}`); nothing was changed")
    # folders this call creates (the root and any missing parent, the destination): removed again if it fails
    created = [p for p in (*reversed(root.parents), root, destination) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rkd-prepare-", dir=root))
    done = False
    try:
        try:
            _extract(path, spec, staging / "extracted", progress)
        except _CORRUPT as error:
            raise ArchiveError(f"cannot extract {path}: {error}. The archive is truncated or corrupt: download it "
                               f"again from {spec.url}. Nothing was changed") from error
        source = _locate(staging / "extracted", spec, path)
        if spec.checksum is None:
            verified_by = _verify_structure(release, source, root, expected, progress)
        destination.mkdir(parents=True, exist_ok=True)
        placed = _move_into_place(source, spec, destination)
        left_out = sorted(p.name for p in source.iterdir() if p.name not in spec.places)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            for folder in reversed(created):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
    return PrepareResult(name, spec, placed, left_out, verified_by)


def _verify_structure(release: Release, folder: Path, root: Path, expected: ReleaseCounts | None,
                      progress: bool) -> str:
    """For an archive with no published checksum: its layout, counts and every image, before it is put in place."""
    report = check_folder(release.name, folder, root=root, expected=expected, progress=progress)
    if not report.ready:
        raise ArchiveError(f"the archive's contents are not {release.title} as released: "
                           f"{' | '.join(report.problems)}. Nothing was changed")
    return (f"no published checksum: layout, counts ({report.images:,} images in {report.classes:,} classes) "
            f"and every image checked")
