"""Where trained models live between runs, notebooks, sessions and cluster jobs:
:class:`ModelStore`, one entry per job key (:mod:`rkd.runs.jobs`) in an
:class:`~rkd.cache.ArtifactCache`, with the job's checkpoint, its training log, the
pretrained trunks' weight files and a lock per key.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from ..cache import ArtifactCache, default_cache_dir
from ..runtime import atomic_torch_save
from ..train.distributed import is_main_process
from ..train.log import default_log_path

__all__ = ["ModelStore"]


class ModelStore:
    """Trained models and their measurements, once per job key: in memory for this
    process, on disk (atomically, under ``directory``) for the others. ``directory``
    None (a dry run): memory only.

    Layout: ``models/<key>.pt`` (the entry: metrics, evaluations along training, and the
    weights when a later job needs them), ``checkpoints/<key>.pt`` and ``<key>.log.csv``
    (while a job trains; the log is kept), ``weights/<key>.pt`` (a pretrained trunk, read
    through a network's ``weights_path``), ``locks/<key>.lock``.
    """

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory is not None else None
        self.cache = ArtifactCache(self.directory / "models") if self.directory is not None else None
        self.memory: dict[str, dict[str, Any]] = {}

    def get(self, key: str, config: dict[str, Any]) -> dict[str, Any] | None:
        """The entry of the job ``key`` (whose full configuration is ``config``), or None."""
        if key in self.memory:
            return self.memory[key]
        payload = self.cache.load(config) if self.cache is not None else None
        if payload is not None:
            self.memory[key] = payload
        return payload

    def put(self, key: str, config: dict[str, Any], payload: dict[str, Any], *, to_disk: bool = True) -> None:
        self.memory[key] = payload
        if to_disk and self.cache is not None:
            self.cache.save(config, payload)

    @contextmanager
    def training(self, key: str) -> Iterator[None]:
        """Held while the job ``key`` trains: another process (a second notebook of the
        same ``make``, a cluster job) that needs the same model waits, then reads it
        instead of training it again."""
        if self.directory is None or not is_main_process():
            # under torchrun the processes of one job train the model together: only rank 0
            # locks, the others would wait for it while it waits for them
            yield
            return
        lock_path = self.directory / "locks" / f"{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(lock_path):
            yield

    def is_locked(self, key: str) -> bool:
        """Whether some process holds the lock of ``key`` now (its job is training)."""
        if self.directory is None:
            return False
        lock_path = self.directory / "locks" / f"{key}.lock"
        if not lock_path.exists():
            return False
        probe = FileLock(lock_path, timeout=0)
        try:
            probe.acquire()
        except TimeoutError:
            return True
        probe.release()
        return False

    def checkpoint_path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / "checkpoints" / f"{key}.pt"

    def log_path(self, key: str) -> Path | None:
        """The training log of job ``key`` (kept after the job ends)."""
        return default_log_path(self.checkpoint_path(key))

    def weights_path(self, key: str) -> Path:
        """The plain state_dict file of the pretrained trunk of job ``key`` (which may not
        exist yet), read through a network's ``weights_path`` as ImageNet weights are."""
        directory = self.directory if self.directory is not None else default_cache_dir()
        return directory / "weights" / f"{key}.pt"

    def write_weights(self, key: str, trunk_state: dict[str, torch.Tensor]) -> Path:
        path = self.weights_path(key)
        atomic_torch_save({k: v.detach().cpu() for k, v in trunk_state.items()}, path)
        return path
