"""How the batches of a :class:`~rkd.train.stream.BatchStream` are loaded: a
``torch.utils.data.DataLoader`` with worker processes, pinned memory on CUDA, and
random transforms whose draws depend on the step alone.

Seeds. Each item of a batch is loaded with the global torch (CPU), NumPy and Python
generators seeded from ``(data_seed, step, position in the batch)``: the random crops
and flips of step ``s`` are the same whichever process loads the batch (or, under data
parallelism, whichever process loads each item), so a run gives the same numbers with 0,
1 or 8 workers, and a resumed run re-creates them from the step number alone. In the main
process (``num_workers=0``) the generators' states are put back after each batch, so
loading never moves the random stream the model and losses draw from. The loader's own
base seed comes from a private generator, for the same reason. A dataset whose loading
draws no random numbers (:func:`draws_randomness`: fixed images) is read without any of
this, and in one call when it offers torch's ``__getitems__``.

Workers are limited to one torch thread each (they decode and augment; the training
threads keep the cores), and live for the whole run: one loader iterator spans every
epoch, so they are never restarted at an epoch boundary.

A failure inside a worker (a corrupt image, say) is sent back as the original exception
object and raised by the loop at the step whose batch it was, with the same message as
without workers.
"""
from __future__ import annotations

import os
import pickle
import random
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info

from .stream import BatchRequest, BatchStream

__all__ = ["LoadFailure", "SeededBatchLoader", "make_loader", "default_num_workers", "seed_generators",
           "preserved_generators", "draws_randomness"]


def default_num_workers(device: torch.device, processes: int = 1) -> int:
    """Worker processes for ``device``: on CUDA, all CPUs but one (the training loop's),
    at most 8 (the authors' setting); on the CPU, the CPUs the training threads leave free
    (``torch.get_num_threads()`` of them train), at most 8. ``processes`` training
    processes on the machine (torchrun's ``--nproc_per_node``) share its CPUs equally."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    cpus //= max(1, processes)
    busy = 1 if device.type == "cuda" else torch.get_num_threads()
    return max(0, min(8, cpus - busy))


def seed_generators(data_seed: int, step: int, position: int) -> None:
    """Seed the global torch (CPU), NumPy and Python generators from ``(data_seed, step, position)``."""
    words = np.random.SeedSequence([int(data_seed), int(step), int(position)]).generate_state(4, dtype=np.uint32)
    # the CPU generator only: torch.manual_seed would reseed CUDA's generators as well
    torch.default_generator.manual_seed(int(words[0]) << 32 | int(words[1]))
    np.random.seed(words[2:])
    random.seed(int(words[3]))


@contextmanager
def preserved_generators() -> Iterator[None]:
    """Put the global torch (CPU), NumPy and Python generators' states back after the block."""
    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


@dataclass
class LoadFailure:
    """An exception raised while a worker loaded the batch of ``step``."""

    step: int
    error: BaseException
    worker_traceback: str


class SeededBatchLoader(Dataset):
    """``dataset`` seen through :class:`BatchRequest`: ``__getitems__(request)`` loads
    each of the request's items with the generators seeded by :func:`seed_generators` and
    collates them into ``(step, fingerprint, batch)``. A dataset that draws no random
    numbers (:func:`draws_randomness`) is read without seeding, through its own
    ``__getitems__(indices)`` when it has one (a list of items, as a DataLoader reads it)."""

    def __init__(self, dataset: Dataset, data_seed: int):
        self.dataset, self.data_seed = dataset, int(data_seed)
        self.seeded = draws_randomness(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]

    def __getitems__(self, request: BatchRequest):
        try:
            return request.step, request.fingerprint, default_collate(self._samples(request))
        except Exception as err:
            if get_worker_info() is None:
                raise  # the main process: the loop sees the exception itself
            try:
                pickle.dumps(err)
            except Exception:  # noqa: BLE001 - let the DataLoader wrap what cannot travel
                raise err from None
            return LoadFailure(request.step, err, traceback.format_exc())

    def _samples(self, request: BatchRequest) -> list:
        if not self.seeded:  # nothing drawn: nothing to seed or put back, and the items may come at once
            load_many = getattr(self.dataset, "__getitems__", None)  # torch's protocol, as a DataLoader uses it
            if load_many is not None:
                return load_many(request.indices)
            return [self.dataset[index] for index in request.indices]
        positions = request.positions if request.positions is not None else range(len(request.indices))
        samples = []
        with preserved_generators():
            for position, index in zip(positions, request.indices):
                seed_generators(self.data_seed, request.step, position)
                samples.append(self.dataset[index])
        return samples


def draws_randomness(dataset: Dataset) -> bool:
    """Whether loading an item of ``dataset`` may draw random numbers: False only when the
    innermost dataset (below Subset-like wrappers, which hold it as ``.dataset``) says it has
    no transform (``transform is None``). Seeding every item costs about a third of a ci
    step, for nothing when the images are fixed (the glyph stand-ins, decoded caches)."""
    while hasattr(dataset, "dataset"):
        if getattr(dataset, "transform", None) is not None:
            return True
        dataset = dataset.dataset
    return not (hasattr(dataset, "transform") and dataset.transform is None)


def _pass_through(loaded):
    # the batch is collated inside __getitems__, with the request's step at hand
    return loaded


def _worker_init(_worker_id: int) -> None:
    # a worker decodes and augments one batch at a time; more threads would only
    # compete with the training process for the cores
    torch.set_num_threads(1)


def make_loader(dataset: Dataset, stream: BatchStream, *, data_seed: int, num_workers: int,
                pin_memory: bool, prefetch_factor: int = 2) -> DataLoader:
    """The training loader: ``stream`` as its batch sampler, batches as ``(step, fingerprint, (images, labels))``."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0 (0: load in the training process), got {num_workers!r}")
    workers = num_workers > 0
    return DataLoader(
        SeededBatchLoader(dataset, data_seed),
        batch_sampler=stream,
        collate_fn=_pass_through,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=workers,
        prefetch_factor=prefetch_factor if workers else None,
        # the loader draws its base seed from this generator, not from the global one
        generator=torch.Generator().manual_seed(int(data_seed)),
    )


def shut_down(iterator) -> None:
    """Stop the worker processes of a loader iterator now rather than when it is
    garbage-collected (an exception's traceback can keep it alive for long)."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()
