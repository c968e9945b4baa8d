"""Batch samplers: FaceNet-style P x m batches for metric learning, N-way K-shot
episodes for few-shot learning and plain shuffled batches for classification.

All are batch samplers (``DataLoader(dataset, batch_sampler=sampler)``) whose batches
depend only on ``(seed, epoch)``: epoch ``e`` draws from
``numpy.random.default_rng([seed, e])``. A full pass advances the epoch by one;
:meth:`set_epoch` sets it. :meth:`state_dict` / :meth:`load_state_dict` carry
``seed``, ``epoch`` and ``position`` (batches of the epoch already handed out), so a run
resumed from a checkpoint draws exactly the batches the killed run would have drawn.

``position`` counts the batches this sampler has yielded. A ``DataLoader`` with workers
asks for a few batches ahead of the training loop; save the state at the end of an
epoch, or save ``{"seed": s, "epoch": e, "position": steps_done_in_epoch}`` built from
the loop's own counters.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from rkd.registry import Registry

__all__ = ["MPerClassSampler", "EpisodeSampler", "RandomBatchSampler", "shard_sizes", "shard_positions",
           "ShardedBatchSampler"]


def _labels_to_numpy(labels) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {array.shape}")
    if len(array) == 0:
        raise ValueError("labels is empty")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _indices_by_class(labels: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    groups = np.split(order, starts[1:])
    return {int(c): g for c, g in zip(classes, groups)}


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class _SeededBatchSampler(Sampler[list[int]]):
    """Epoch / position / state handling shared by the samplers below."""

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0

    def _draw(self, rng: np.random.Generator) -> list[int]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` on the next pass, from its start."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        missing = {"seed", "epoch", "position"} - set(state)
        if missing:
            raise KeyError(f"sampler state lacks {sorted(missing)}")
        if not 0 <= int(state["position"]) <= len(self):
            raise ValueError(f"position {state['position']} is outside 0..{len(self)}")
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])

    def __iter__(self) -> Iterator[list[int]]:
        epoch, start = self.epoch, self.position
        rng = np.random.default_rng([self.seed, epoch])
        for batch_index in range(len(self)):
            batch = self._draw(rng)  # drawn even when skipped, so batch k never depends on the resume point
            if batch_index < start:
                continue
            self.position = batch_index + 1
            yield batch
        self.epoch, self.position = epoch + 1, 0


# What MPerClassSampler does with a class holding fewer than m images.
SMALL_CLASS_POLICIES: Registry = Registry("small-class policy")
SMALL_CLASS_POLICIES.register("error", "raise an error naming the classes")
SMALL_CLASS_POLICIES.register("drop", "never sample those classes")
SMALL_CLASS_POLICIES.register("replace", "draw their m images with replacement (duplicates in the batch)")
SMALL_CLASS_POLICIES.register("take_all", "take all their images and fill the batch with further classes "
                              "(the authors' NPairs sampler; the last class may be cut short)")


class MPerClassSampler(_SeededBatchSampler):
    """FaceNet-style batches: ``P = batch_size // m`` distinct classes, ``m`` images each.

    Each batch draws P classes uniformly without replacement, then m images of each
    class without replacement; the batch lists the classes one after the other
    (indices ``[c1 x m, c2 x m, ...]``).

    ``batch_size`` must be a multiple of m unless ``fill_with_partial_class=True``: then
    a batch holds P full classes and ``r = batch_size % m`` images of one more class
    (P + 1 distinct classes, the partial one last), which is how the authors' ``NPairs``
    sampler (``lenscloth/RKD``, ``metric/batchsampler.py``) builds the paper's batch of
    128 with m = 5: 25 classes x 5 images + 3 images of a 26th class. (NPairs walks a
    random permutation of all classes, takes ``min(m, n_c)`` random images of each and
    cuts the list at ``batch_size``; with every class holding m or more images that is
    exactly this draw.) With ``r == 0`` the option changes nothing.

    ``small_classes`` says what to do with a class holding fewer than m images:
    ``"error"`` (default) raises naming the classes and their counts; ``"drop"`` never
    samples them; ``"replace"`` draws their m images with replacement; ``"take_all"``
    takes all their images and fills the batch with further classes, which is what the
    authors' ``NPairs`` sampler does (Stanford Online Products has many classes of 2-4
    images); with it a batch has ``batch_size`` images but may have more than P
    classes, and its last class may be cut short.

    ``batches_per_epoch`` defaults to ``len(labels) // batch_size`` (at least 1); the
    authors' code uses 100 (``--iter_per_epoch``).
    """

    def __init__(self, labels, m: int = 5, batch_size: int = 128, batches_per_epoch: int | None = None,
                 seed: int = 0, small_classes: str = "error", fill_with_partial_class: bool = False):
        super().__init__(seed)
        labels = _labels_to_numpy(labels)
        self.m = _positive_int("m", m)
        self.batch_size = _positive_int("batch_size", batch_size)
        if not isinstance(fill_with_partial_class, bool):
            raise TypeError(f"fill_with_partial_class must be a bool, got {fill_with_partial_class!r}")
        self.fill_with_partial_class = fill_with_partial_class
        self.partial_class_size = self.batch_size % self.m
        if self.partial_class_size and not fill_with_partial_class:
            raise ValueError(f"batch_size ({batch_size}) must be a multiple of m ({m}): each batch holds "
                             f"batch_size // m classes of m images; or pass fill_with_partial_class=True to fill "
                             f"the last {self.partial_class_size} places with images of one more class (the "
                             f"authors' batches: 128 = 25 classes x 5 + 3)")
        self.classes_per_batch = self.batch_size // self.m
        SMALL_CLASS_POLICIES.get(small_classes)
        self.small_classes = small_classes
        by_class = _indices_by_class(labels)
        small = {c: len(idx) for c, idx in by_class.items() if len(idx) < self.m}
        if small and small_classes == "error":
            listed = ", ".join(f"class {c}: {n} images" for c, n in list(small.items())[:10])
            more = f" and {len(small) - 10} more" if len(small) > 10 else ""
            raise ValueError(f"{len(small)} classes have fewer than m={self.m} images ({listed}{more}); "
                             "pass small_classes='drop', 'replace' or 'take_all' to allow them")
        if small_classes == "drop":
            by_class = {c: idx for c, idx in by_class.items() if c not in small}
        self._class_ids = np.array(sorted(by_class), dtype=np.int64)
        self._members = [by_class[c] for c in self._class_ids]
        distinct = self.classes_per_batch + (1 if self.partial_class_size else 0)
        needed = 1 if small_classes == "take_all" else distinct
        if len(self._class_ids) < needed:
            raise ValueError(f"{len(self._class_ids)} usable classes, but a batch of {self.batch_size} with "
                             f"m={self.m} needs {distinct} distinct classes")
        if small_classes == "take_all" and sum(len(g) for g in self._members) < self.batch_size:
            raise ValueError(f"only {len(labels)} images in all, fewer than batch_size={self.batch_size}")
        if batches_per_epoch is None:
            batches_per_epoch = max(1, len(labels) // self.batch_size)
        self.batches_per_epoch = _positive_int("batches_per_epoch", batches_per_epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _draw(self, rng: np.random.Generator) -> list[int]:
        if self.small_classes == "take_all":
            batch: list[int] = []
            for position in rng.permutation(len(self._members)):
                members = self._members[position]
                batch += rng.choice(members, size=min(self.m, len(members)), replace=False).tolist()
                if len(batch) >= self.batch_size:
                    return batch[: self.batch_size]
            raise AssertionError("unreachable: the constructor checks there are enough images")
        sizes = [self.m] * self.classes_per_batch + ([self.partial_class_size] if self.partial_class_size else [])
        batch = []
        for position, size in zip(rng.choice(len(self._members), size=len(sizes), replace=False), sizes):
            members = self._members[position]
            batch += rng.choice(members, size=size, replace=len(members) < size).tolist()
        return batch


class EpisodeSampler(_SeededBatchSampler):
    """Seeded N-way K-shot episodes with Q queries per class.

    Each episode draws ``n_way`` distinct classes, then ``k_shot + n_query`` distinct
    images of each. The layout is class-major: for each sampled class in order, its
    ``k_shot`` support indices then its ``n_query`` query indices, the layout that
    ``rkd.losses.fewshot.split_episode`` cuts into support and queries.
    """

    def __init__(self, labels, n_way: int, k_shot: int, n_query: int, episodes: int, seed: int = 0):
        super().__init__(seed)
        labels = _labels_to_numpy(labels)
        self.n_way = _positive_int("n_way", n_way)
        self.k_shot = _positive_int("k_shot", k_shot)
        self.n_query = _positive_int("n_query", n_query)
        self.episodes = _positive_int("episodes", episodes)
        by_class = _indices_by_class(labels)
        per_class = self.k_shot + self.n_query
        small = {c: len(idx) for c, idx in by_class.items() if len(idx) < per_class}
        if small:
            listed = ", ".join(f"class {c}: {n} images" for c, n in list(small.items())[:10])
            raise ValueError(f"{len(small)} classes have fewer than k_shot + n_query = {per_class} images "
                             f"({listed}); lower k_shot or n_query")
        if len(by_class) < self.n_way:
            raise ValueError(f"n_way={self.n_way} but the labels hold only {len(by_class)} classes")
        self._members = [by_class[c] for c in sorted(by_class)]

    def __len__(self) -> int:
        return self.episodes

    def _draw(self, rng: np.random.Generator) -> list[int]:
        episode: list[int] = []
        for position in rng.choice(len(self._members), size=self.n_way, replace=False):
            episode += rng.choice(self._members[position], size=self.k_shot + self.n_query, replace=False).tolist()
        return episode


class RandomBatchSampler(_SeededBatchSampler):
    """Shuffled batches over ``num_items`` indices, as ``DataLoader(shuffle=True)`` gives,
    but seeded per epoch so a resumed run draws the same batches.

    Epoch ``e`` is the permutation ``numpy.random.default_rng([seed, e]).permutation(num_items)``
    cut into consecutive batches of ``batch_size``. With ``drop_last`` (default) the
    last ``num_items % batch_size`` indices of the permutation are left out of that
    epoch, so every batch has ``batch_size`` items (BatchNorm and the relational losses
    see batches of one size); without it they form a last, smaller batch.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, drop_last: bool = True):
        super().__init__(seed)
        self.num_items = _positive_int("num_items", num_items)
        self.batch_size = _positive_int("batch_size", batch_size)
        if not isinstance(drop_last, bool):
            raise TypeError(f"drop_last must be a bool, got {type(drop_last).__name__}: {drop_last!r}")
        self.drop_last = drop_last
        if drop_last and self.num_items < self.batch_size:
            raise ValueError(f"num_items={num_items} is smaller than batch_size={batch_size}: with "
                             "drop_last=True an epoch would hold no batch; lower batch_size or pass drop_last=False")

    def __len__(self) -> int:
        full, rest = divmod(self.num_items, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[int]]:
        # one permutation per epoch rather than one draw per batch (the base class's
        # _draw), so the epoch covers every index once
        epoch, start = self.epoch, self.position
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
        for batch_index in range(start, len(self)):
            self.position = batch_index + 1
            yield order[batch_index * self.batch_size:(batch_index + 1) * self.batch_size].tolist()
        self.epoch, self.position = epoch + 1, 0


# ------------------------------------------------------------------------ data parallelism


def shard_sizes(batch_size: int, world_size: int) -> list[int]:
    """How many items of a batch of ``batch_size`` each of ``world_size`` processes loads
    under data parallelism: balanced, the first ``batch_size % world_size`` ranks one more."""
    batch_size, world_size = _positive_int("batch_size", batch_size), _positive_int("world_size", world_size)
    if batch_size < world_size:
        raise ValueError(f"a batch of {batch_size} cannot be split over {world_size} processes (each needs at "
                         f"least one item); use a larger batch or fewer processes (torchrun --nproc_per_node)")
    base, extra = divmod(batch_size, world_size)
    return [base + (1 if rank < extra else 0) for rank in range(world_size)]


def shard_positions(batch_size: int, rank: int, world_size: int) -> range:
    """The positions of a batch of ``batch_size`` that process ``rank`` of ``world_size``
    loads: one contiguous block, the blocks in rank order (see :func:`shard_sizes`).

    Contiguous blocks in rank order are what makes data parallelism exact: gathering the
    ranks' rows in rank order gives back the batch in its own order, so a loss computed
    on the gathered rows sees the single-process batch. For an m-per-class batch
    ``[c1 x m, c2 x m, ...]`` every class keeps its m images in the global batch (a class
    may straddle two ranks; the losses never look at a rank's rows alone), and an episode
    keeps its class-major layout.
    """
    sizes = shard_sizes(batch_size, world_size)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in 0..{world_size - 1}, got {rank!r}")
    start = sum(sizes[:rank])
    return range(start, start + sizes[rank])


class ShardedBatchSampler(Sampler[list[int]]):
    """Process ``rank``'s part (:func:`shard_positions`) of every batch of ``batch_sampler``.

    For a DataLoader of your own under ``torchrun``: every process wraps the same
    global sampler (same seed), so the ranks' parts of a step make up its global batch.
    ``len``, ``set_epoch``, ``state_dict`` and ``load_state_dict`` are the global
    sampler's, so a checkpoint records the global position. :func:`rkd.train.fit` takes
    the global sampler itself and shards it (it also keeps each item's random transform
    that of its global position); do not pass it this wrapper.
    """

    def __init__(self, batch_sampler, rank: int, world_size: int):
        self.batch_sampler = batch_sampler
        self.world_size = _positive_int("world_size", world_size)
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < self.world_size:
            raise ValueError(f"rank must be an int in 0..{self.world_size - 1}, got {rank!r}")
        self.rank = int(rank)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batch_sampler:
            batch = list(batch)
            yield [batch[p] for p in shard_positions(len(batch), self.rank, self.world_size)]

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.load_state_dict(state)
