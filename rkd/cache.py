"""A small on-disk cache for artifacts that are expensive to recompute (trained teachers,
embeddings), keyed by the configuration that produced them.

::

    cache = ArtifactCache("~/.cache/rkd")
    key = {"what": "teacher", "dataset": "cub200", "model": "resnet50", "seed": 0,
           "train": asdict(train_config)}
    state = cache.load(key)
    if state is None:
        state = train_teacher(...).state_dict()
        cache.save(key, state)

Rules:

- An entry is the file ``<sha256 of the key's canonical JSON>.pt`` holding
  ``{"config": <canonical JSON>, "version": rkd.__version__, "payload": payload}``.
  The key is a JSON-able mapping (dataclasses, tuples and paths are converted; keys
  must be strings); everything that decides the payload belongs in it.
- An entry is written atomically (temporary file, then rename): a crash leaves either
  no entry or a complete one, never a half-written file that a later run trusts. A
  temporary file orphaned by a kill (``.<name>.*.tmp``) is never read.
- :meth:`ArtifactCache.load` returns None (a miss) when there is no entry, and also,
  with a :class:`StaleCacheWarning` giving the reason, when the entry was written by
  another rkd version, records another configuration, or is unreadable (truncated or
  corrupt). The caller recomputes and saves, which replaces the stale entry.
- Entries are loaded with ``torch.load(weights_only=True)``: the payload may hold
  tensors, numbers, strings, None and dicts / lists / tuples of them (a
  ``state_dict()``, say), nothing else. :meth:`ArtifactCache.save` refuses anything else
  up front; an entry holding other pickled objects (which can run code when unpickled)
  is refused with :class:`~rkd.runtime.UnsafeCheckpointError`, not treated as a miss,
  because it was not written by this cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import torch

from .runtime import UnsafeCheckpointError, atomic_torch_save, safe_torch_load

__all__ = [
    "ArtifactCache",
    "StaleCacheWarning",
    "canonical_json",
    "config_digest",
    "package_version",
    "default_cache_dir",
]


def default_cache_dir() -> Path:
    """Where rkd keeps trained models and rendered data between runs.

    ``$RKD_CACHE_DIR`` when set (the Makefile sets it to the checkout's ``.cache/``,
    which git ignores and ``make clean`` removes); else ``.cache/`` of the source
    checkout rkd is imported from (an editable install); else ``~/.cache/rkd``.
    """
    configured = os.environ.get("RKD_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "rkd" / "__init__.py").is_file():
        return checkout / ".cache"
    return Path.home() / ".cache" / "rkd"


def package_version() -> str:
    """``rkd.__version__``, the version cache entries are written with by default."""
    try:
        from . import __version__
    except ImportError:
        # an editable install made before rkd/__init__.py existed imports rkd as a
        # namespace package, without its __init__; the installed metadata has the version
        from importlib.metadata import version

        return version("rkd")
    return __version__


class StaleCacheWarning(UserWarning):
    """A cache entry that exists but cannot be used: another version, another
    configuration, or unreadable. It is treated as a miss."""


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON types, or a TypeError naming where the offending value is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"cache key {where} has non-string keys {bad!r}; use strings")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Enum):
        return _plain(value.value, where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise TypeError(f"cache key {where} is {value!r}; NaN and infinities have no stable JSON form")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"cache key {where} is a {type(value).__name__} ({value!r}); a key holds only strings, numbers, "
        f"booleans, None, lists, dicts, dataclasses and paths"
    )


def canonical_json(config: Mapping[str, Any]) -> str:
    """The one JSON text of ``config``: sorted keys, no spaces, tuples as lists."""
    if not isinstance(config, Mapping) and not dataclasses.is_dataclass(config):
        raise TypeError(f"a cache key must be a mapping (or a dataclass), got {type(config).__name__}")
    return json.dumps(_plain(config, "config"), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_digest(config: Mapping[str, Any]) -> str:
    """Hex SHA-256 of :func:`canonical_json` of ``config``: the entry's file name."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


_PAYLOAD_LEAVES = (torch.Tensor, str, bytes, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


def _check_payload(value: Any, where: str = "payload") -> None:
    """Refuse what ``torch.load(weights_only=True)`` would refuse, naming where it is."""
    if isinstance(value, _PAYLOAD_LEAVES):
        return
    if isinstance(value, (dict, OrderedDict)):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool, type(None), tuple)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; use strings or numbers")
            _check_payload(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        for i, v in enumerate(value):
            _check_payload(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}, which a safe load (weights_only=True) would refuse; a cached "
        f"payload holds tensors, numbers, strings, None and dicts/lists/tuples of them (e.g. a state_dict())"
    )


class ArtifactCache:
    """Artifacts on disk under ``directory``, one file per configuration.

    Args:
        directory: where the entries live (created on first save).
        version: the version entries are written with and must match; the package
            version by default, so a new release recomputes everything.
    """

    def __init__(self, directory: str | os.PathLike, *, version: str | None = None):
        self.directory = Path(directory).expanduser()
        self.version = package_version() if version is None else str(version)

    def path(self, config: Mapping[str, Any]) -> Path:
        """The entry file for ``config`` (which may not exist yet)."""
        return self.directory / f"{config_digest(config)}.pt"

    def load(self, config: Mapping[str, Any]) -> Any | None:
        """The payload saved for ``config``, or None when there is no usable entry.

        A stale entry (another version or configuration) or an unreadable one is a
        miss with a :class:`StaleCacheWarning` saying why.

        Raises:
            UnsafeCheckpointError: the entry holds pickled objects other than tensors
                and plain containers; delete the file.
        """
        expected = canonical_json(config)
        path = self.path(config)
        if not path.is_file():
            return None
        try:
            entry = safe_torch_load(path)
        except UnsafeCheckpointError:
            raise
        except (RuntimeError, OSError, EOFError) as err:
            return self._stale(path, f"it is unreadable ({str(err).splitlines()[0]})")
        if not isinstance(entry, dict) or not {"config", "version", "payload"} <= set(entry):
            return self._stale(path, "it is not an rkd cache entry")
        if entry["version"] != self.version:
            return self._stale(path, f"it was written by rkd {entry['version']}, this is {self.version}")
        if entry["config"] != expected:
            return self._stale(path, f"it records another configuration: {entry['config']} instead of {expected}")
        return entry["payload"]

    def save(self, config: Mapping[str, Any], payload: Any) -> Path:
        """Write ``payload`` for ``config`` atomically, replacing any entry; return its path.

        Raises:
            TypeError: ``payload`` holds something a safe load would refuse, or
                ``config`` is not JSON-able; the message says where.
        """
        canonical = canonical_json(config)
        _check_payload(payload)
        path = self.path(config)
        atomic_torch_save({"config": canonical, "version": self.version, "payload": payload}, path)
        return path

    @staticmethod
    def _stale(path: Path, reason: str) -> None:
        warnings.warn(f"ignoring cache entry {path}: {reason}; recomputing", StaleCacheWarning, stacklevel=3)
        return None

    def __repr__(self) -> str:
        return f"ArtifactCache({str(self.directory)!r}, version={self.version!r})"
