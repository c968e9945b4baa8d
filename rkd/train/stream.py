"""The resumable batch stream: which dataset indices each training step loads.

rkd's batch samplers draw epoch ``e`` from ``(seed, e)`` alone (``set_epoch``), so the
batches of a run are a function of the step number. :class:`BatchStream` turns a
sampler into the sequence of :class:`BatchRequest` ``(step, indices, fingerprint)`` for
steps ``start .. total - 1``, epoch after epoch. A resumed run re-draws the current epoch
and skips the index lists already used (their images are never loaded); the fingerprint
of the last batch the interrupted run used is compared with the re-drawn one.

The stream is the ``batch_sampler`` of the training ``DataLoader`` (see
:mod:`rkd.train.loader`). A loader with workers asks for batches ahead of the loop, so
the sampler's own ``state_dict()`` runs ahead too: checkpoints record the sampler state
that the loop's step counter gives (:meth:`BatchStream.sampler_state`), never the
sampler's live position.

An error of the sampler (a resume mismatch, a wrong ``len()``) is not raised inside the
DataLoader, where it would surface at whichever step the prefetching happened to be:
the stream stops there and keeps it in :attr:`BatchStream.error`, and the loop raises it
at the step it belongs to.

Data parallelism (:mod:`rkd.train.distributed`) hooks in here: ``shard(batch_size)``
returns the positions of the global batch this process loads; the fingerprint stays that
of the global batch, each item keeps the random transform of its global position, and
:meth:`BatchStream.global_batch_size` tells the loop how large the global batch of a
step is (the ranks' rows are gathered by it) without asking the other processes.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoint import CheckpointMismatchError

__all__ = ["BatchRequest", "BatchStream", "fingerprint", "plain_sampler_state", "check_resumed_sampler"]


@dataclass(frozen=True)
class BatchRequest:
    """The batch of training step ``step`` (0-based): dataset indices, their digest, and
    each item's position in the (global) batch, which seeds its random transform
    (None: 0, 1, 2, ...)."""

    step: int
    indices: list
    fingerprint: str
    positions: list | None = None


def fingerprint(indices) -> str:
    """A short digest of a batch's dataset indices: enough to tell two batches apart."""
    plain = [int(i) if isinstance(i, (int, np.integer)) else repr(i) for i in indices]
    return hashlib.sha256(repr(plain).encode()).hexdigest()[:16]


class BatchStream:
    """``BatchRequest`` for the steps ``start_step .. total_steps - 1`` of a run.

    ``batch_sampler`` yields lists of dataset indices, ``len(batch_sampler)`` per epoch;
    for an exact resume its batches must depend only on its seed and the epoch given to
    ``set_epoch`` (rkd's samplers), or be the same on every pass. ``previous_batch`` is
    the fingerprint of the batch of step ``start_step - 1`` recorded by the interrupted
    run; when that batch lies in the current epoch it is checked against the re-drawn one.
    ``shard(batch_size) -> positions`` picks the part of each batch this process loads.
    """

    def __init__(self, batch_sampler, start_step: int, total_steps: int, previous_batch: str | None = None,
                 shard: Callable[[int], Sequence[int]] | None = None):
        self.batch_sampler = batch_sampler
        self.per_epoch = len(batch_sampler)
        if self.per_epoch < 1:
            raise ValueError("the batch sampler yields no batches: the dataset is smaller than one batch")
        self.start_step, self.total_steps = start_step, total_steps
        self.previous_batch = previous_batch
        self.shard = shard
        #: ``(step, error)`` when the sampler failed while drawing the batch of ``step``
        self.error: tuple[int, Exception] | None = None
        # step -> size of its global batch, for the steps drawn (ahead of the loop, with
        # workers) but not yet asked for; the DataLoader draws in this process
        self._global_sizes: dict[int, int] = {}

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[BatchRequest]:
        self._failed_at = self.start_step
        try:
            yield from self._requests()
        except Exception as err:  # noqa: BLE001 - kept for the loop, raised at its step
            self.error = (self._failed_at, err)

    def _requests(self) -> Iterator[BatchRequest]:
        sampler, per_epoch = self.batch_sampler, self.per_epoch
        step = self.start_step
        while step < self.total_steps:
            epoch, position = divmod(step, per_epoch)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            drawn = 0
            for indices in sampler:
                drawn += 1
                if drawn > per_epoch:
                    break
                if drawn <= position:
                    if drawn == position and self.previous_batch is not None \
                            and fingerprint(indices) != self.previous_batch:
                        raise CheckpointMismatchError(
                            f"the batch sampler does not re-draw the batches of the interrupted run (batch "
                            f"{drawn} of epoch {epoch + 1} differs), so resuming at step {step} would train on "
                            f"other data. Use a sampler whose batches depend only on its seed and the epoch "
                            f"(set_epoch), such as rkd.data.MPerClassSampler, with the seed of the first run; "
                            f"or delete the checkpoint to start afresh."
                        )
                    continue
                indices = list(indices)
                digest = fingerprint(indices)
                positions = None
                if self.shard is not None:
                    self._global_sizes[step] = len(indices)
                    positions = [int(p) for p in self.shard(len(indices))]
                    indices = [indices[p] for p in positions]
                yield BatchRequest(step, indices, digest, positions)
                step = self._failed_at = step + 1
                if step >= self.total_steps:
                    return  # before drawing another batch
            if drawn != per_epoch and step < self.total_steps:
                # epochs are counted in len() batches; a sampler that yields another number
                # would put a resumed run at another point of its sequence
                raise ValueError(
                    f"the batch sampler yielded {'more than ' if drawn > per_epoch else ''}"
                    f"{min(drawn, per_epoch)} batches in epoch {epoch + 1} but its len() is {per_epoch}; "
                    f"make __len__ return the number of batches one pass yields"
                )

    def global_batch_size(self, step: int) -> int:
        """The number of items in the global batch of ``step`` (asked once per step, after
        its batch was drawn; only for a sharded stream)."""
        return self._global_sizes.pop(step)

    def sampler_state(self, steps_done: int) -> dict[str, Any] | None:
        """The sampler's state as it is right after the loop used ``steps_done`` batches:
        its ``state_dict()`` with ``epoch`` and ``position`` taken from the step counter
        (an rkd sampler that has just handed out the last batch of epoch e reports
        ``(e, len)``)."""
        state = plain_sampler_state(self.batch_sampler)
        if state is not None and steps_done > 0 and {"epoch", "position"} <= set(state):
            epoch, position = divmod(steps_done - 1, self.per_epoch)
            state.update(epoch=epoch, position=position + 1)
        return state


def plain_sampler_state(batch_sampler) -> dict[str, Any] | None:
    """The sampler's ``state_dict()`` reduced to plain values (a checkpoint must load with
    ``weights_only=True``), or None for a sampler without one."""
    state_dict = getattr(batch_sampler, "state_dict", None)
    if not callable(state_dict):
        return None
    return {k: v for k, v in dict(state_dict()).items() if isinstance(v, (bool, int, float, str, type(None)))}


def check_resumed_sampler(saved: dict[str, Any] | None, batch_sampler, step: int, path) -> None:
    """Compare the sampler state saved with the checkpoint with this run's sampler.

    Keys other than ``epoch`` and ``position`` (the seed, for rkd's samplers) must be
    equal; ``epoch`` and ``position`` must be where the step puts them (``(e, len)`` is
    the same point as ``(e + 1, 0)``).
    """
    current = plain_sampler_state(batch_sampler)
    if saved is None or current is None:
        return
    differing = {
        k: (saved.get(k), current.get(k))
        for k in sorted((set(saved) | set(current)) - {"epoch", "position"})
        if saved.get(k) != current.get(k)
    }
    if differing:
        described = ", ".join(f"{k}={a!r} in the checkpoint, {b!r} now" for k, (a, b) in differing.items())
        raise CheckpointMismatchError(
            f"checkpoint {path} was written with another batch sampler ({described}); resuming would draw "
            f"other batches. Use the sampler settings of the first run, or delete the checkpoint to start afresh."
        )
    if {"epoch", "position"} <= set(saved):
        per_epoch = len(batch_sampler)
        epoch, position = int(saved["epoch"]), int(saved["position"])
        if position == per_epoch:
            epoch, position = epoch + 1, 0
        if (epoch, position) != divmod(step, per_epoch):
            raise CheckpointMismatchError(
                f"checkpoint {path} is at step {step}, but its sampler was at epoch {epoch}, batch {position}: "
                f"the sampler had another number of batches per epoch than this one ({per_epoch}). Use the "
                f"sampler settings of the first run, or delete the checkpoint to start afresh."
            )
