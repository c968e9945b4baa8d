"""Run-time plumbing shared by the trainer and the experiments: seeding and determinism,
atomic file writes and safe checkpoint loading."""
from __future__ import annotations

import json
import os
import pickle
import random
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .portable import warn_unless_pinned

__all__ = [
    "seed_everything",
    "configure_determinism",
    "atomic_write",
    "atomic_torch_save",
    "atomic_write_json",
    "safe_torch_load",
    "UnsafeCheckpointError",
]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CPU and CUDA)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}: {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(threads: int | None, *, portable: bool = True) -> bool:
    """Deterministic algorithms and, when ``threads`` is given, a fixed intra-op thread count.

    A fixed thread count matters on the CPU: reductions are split across threads, so
    a different count can change the last bits of a sum and, over a training run,
    the final metrics. With ``portable`` (the default) the CPU pin of
    :mod:`rkd.portable` is checked too (NNPACK, which picks its own kernels by CPU, is
    switched off): when it is not in effect a :class:`~rkd.portable.PortableNumericsWarning`
    says why and how to fix it. Returns whether the results are pinned, i.e. the same
    on every x86-64 CPU with AVX2.
    """
    torch.use_deterministic_algorithms(True, warn_only=False)
    if torch.cuda.is_available():
        # cuBLAS needs this workspace setting for deterministic matmuls
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if not portable:
        return False
    torch.backends.nnpack.set_flags(False)
    return warn_unless_pinned()


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash (or SIGKILL) at any point leaves either the old file or the new one, never a
    half-written file: the temporary file is removed on error, and one orphaned by a
    kill has a ``.tmp`` suffix that no reader looks at.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its files are private (0600) whatever the umask, and results or
    # models written on a shared filesystem must be readable as any other file of the user's
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`: never half-written."""
    with atomic_write(path, "wb") as handle:
        torch.save(obj, handle)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    """``obj`` as JSON (indented, keys sorted) to ``path`` through :func:`atomic_write`:
    never half-written."""
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint that holds more than tensors and plain containers."""


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)`` with an error that says what to do.

    Checkpoints written by this package hold only tensors, numbers, strings and plain
    containers; anything else (arbitrary pickled objects, which can run code when
    loaded) is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # quote torch's line naming the object, not its first line, which suggests
        # weights_only=False: the very thing this refusal is about
        culprit = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), "")
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds pickled objects other than tensors and plain "
            f"containers, which could run arbitrary code. Only load checkpoints written by rkd "
            f"(or re-save yours as a plain state_dict)." + (f" Loader said: {culprit}" if culprit else "")
        ) from None
    except (RuntimeError, EOFError) as err:
        raise RuntimeError(
            f"checkpoint {path} is unreadable (truncated or corrupt?): {err}. Delete it to start afresh."
        ) from err
