"""Data parallelism: ``torchrun --nproc_per_node W`` processes train one model on the
global batch of the single-process run, with PyTorch's DistributedDataParallel.

Naive data parallelism changes the objective of the batch-wide losses: each process
would compute RKD-D's mean distance, RKD-A's triples, DarkRank's rankings, the triplet
sampler's negatives and RRD's queue over its own slice of the batch. Here every loss
term sees the whole global batch, and the gradient is the single-process gradient.

**The global batch** is the single-process batch: every process draws it from the same
sampler with the same seed and loads only its own positions
(:func:`rkd.data.samplers.shard_positions`: one contiguous block per rank, in rank order, sizes
differing by at most one), each item with the random transform of its global position.
Fingerprints and sampler states in checkpoints are the global batch's.

**Forward.** Each process runs the student (and the teacher) on its own rows only. Their
outputs (embedding, logits, feature taps) are then all-gathered in rank order, which is
the global batch's order: the student's by :class:`AllGatherRows`, whose backward hands
each process the gradient of its own rows; the teacher's and the labels without
gradient. Every loss term then runs on the gathered batch, identically on every process:
RKD-D, RKD-A, DarkRank, the triplet sampler (its random draws are the same on every
process: rank 0's random state is broadcast at the start) and the RRD queue (every
process enqueues the whole global batch, so every queue equals the single-process one).

**Gradient scaling.** Write L for the loss of the global batch, E_r for the rows of rank
r and theta for the student's weights; one process computes dL/dtheta =
sum_r (dL/dE_r)(dE_r/dtheta). Under data parallelism every process q computes the same
L_q = L. In q's backward, the gathered rows pass dL/dE (all rows) to the gather's
backward, which sums over processes and keeps each process's own rows: rank r receives
sum_q dL_q/dE_r = W dL/dE_r and backpropagates it through its own student pass,
g_r = W (dL/dE_r)(dE_r/dtheta). DDP averages: (1/W) sum_r g_r = dL/dtheta, the
single-process gradient. So the factor is 1: neither the loss nor the gradients are
rescaled. (A gather whose backward only took the local slice of dL/dE, without the sum,
would need the loss multiplied by W.) Parameters of the loss terms (RRD's projections,
FitNet's regressors) see the gathered batch on every process, so each process already
holds the full dL/dphi, and DDP's average of W equal gradients is dL/dphi again. They are
part of the DDP module (the whole Distiller is wrapped; the frozen teacher has no
gradients), so their gradients are averaged and their values stay equal across processes.
A term split over the processes instead of replicated, such as RKD-A with local anchors
below, returns W times its part: sum_q W dP_q/dE_r summed by the gather and averaged by
DDP gives sum_q dP_q/dtheta = dL/dtheta again. ``tests/test_distributed.py`` checks all
of this against one process, losses, gradients and weights.

**Batch norm.** On CUDA the student's BatchNorm layers become SyncBatchNorm for the run
(their parameters and statistics are the same tensors; the original layers are put back
afterwards), so the batch statistics are the global batch's, as in one process:
m-per-class shards hold 3 classes each at 8 GPUs, and per-process statistics would
normalise by those. ``sync_batchnorm=False`` keeps per-process statistics (faster, not
the single-process objective). SyncBatchNorm does not run on the CPU, where statistics are
per process (a warning says so when the student has BatchNorm layers). DDP broadcasts
rank 0's buffers (running statistics, the RRD queue) before every forward.

**Local anchors** (``angle_anchors="local"``): RKD-A costs N^3 in the global batch N.
A loss term whose loss is a sum of per-row parts says so (``LossTerm.splits_over_rows``;
RKD-A: a row's part holds the triples whose angle's vertex it is) and computes the parts
of any rows (``LossTerm.forward_rows``, for RKD-A ``rkd_angle(..., vertices=rows)``). With
local anchors each process computes only its own rows' part of every such term, against
the whole gathered batch; the parts sum to the same loss, the value reported is that sum
(the same on every process), the gradient is scaled by W as derived above: N^3 / W per
process instead of N^3 for RKD-A. This module asks the terms, never which loss they are.

**Checkpoints, logs, progress bars**: rank 0 writes (atomically, as always); every process
loads the same checkpoint on resume (several machines need a shared file system), and
they check that they resumed from the same step. Changing the number of processes between
a run and its resume is refused: the numbers would not be those of the first run.

**The NaN guard** reads the finite-ness flags and the loss values of all processes in one
collective at each check: every process stops at the same step; processes whose loss
values disagree (which would mean they no longer compute the same thing) stop the run.

**What changes with W.** Nothing in the objective. The numbers are not bit-identical to
one process: sums over the batch run in another order (the gathered Gram matrices are
the same, but the student's weight gradients are summed over the rows of W processes and
then all-reduced), so a run on 8 GPUs equals the one-GPU run to float rounding at each
step, and runs drift apart over many steps as any two GPUs' runs do. Without SyncBatchNorm
(CPU, or opted out) the batch statistics differ.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..data.samplers import ShardedBatchSampler, shard_positions, shard_sizes
from ..losses.terms import LossTerm
from ..registry import Registry
from .checkpoint import rng_state, set_rng_state

__all__ = ["DataParallel", "DataParallelOptions", "AllGatherRows", "ANGLE_ANCHORS", "setup", "teardown",
           "configure", "is_main_process", "rank_zero_decides"]


def _whole(term: LossTerm, parallel: DataParallel) -> None:
    """Every process computes the whole term on the gathered batch, as one process does."""
    return None


def _own_rows(term: LossTerm, parallel: DataParallel) -> Callable[[], None]:
    """The term over this process's rows only (``term.forward_rows``): the value returned
    is the sum of every process's part (the loss itself, on every process), the gradient
    W times this process's part (see the module docstring). Returns what undoes it."""

    def forward(student, teacher, labels):
        part = term.forward_rows(student, teacher, labels, parallel.own_rows())
        total = parallel.all_sum(part)
        scaled = part * parallel.world_size
        return scaled + (total - scaled.detach())  # value: the loss; gradient: W x this part's

    term.forward = forward
    return lambda: vars(term).pop("forward", None)


#: how the processes share the loss terms that are sums of per-row parts
#: (``LossTerm.splits_over_rows``, RKD-A's N^3 triples): each entry takes such a term and
#: the job, sets the term up for the run and returns what undoes that (None: nothing to undo)
ANGLE_ANCHORS: Registry[Callable[[LossTerm, DataParallel], Callable[[], None] | None]] = Registry("RKD-A anchors")
ANGLE_ANCHORS.register("global", _whole)
ANGLE_ANCHORS.register("local", _own_rows)


@dataclass(frozen=True)
class DataParallelOptions:
    """How the processes of a torchrun job share the work (see the module docstring).

    ``sync_batchnorm``: None (default) SyncBatchNorm on CUDA, per-process statistics on
    the CPU (where SyncBatchNorm does not run); False per-process statistics; True
    SyncBatchNorm (CUDA only). ``angle_anchors``: a name of :data:`ANGLE_ANCHORS`.
    """

    sync_batchnorm: bool | None = None
    angle_anchors: str = "global"

    def __post_init__(self):
        if self.sync_batchnorm is not None and not isinstance(self.sync_batchnorm, bool):
            raise TypeError(f"sync_batchnorm must be True, False or None, got {self.sync_batchnorm!r}")
        ANGLE_ANCHORS.get(self.angle_anchors)


_options = DataParallelOptions()


def configure(**options: Any) -> DataParallelOptions:
    """Set the :class:`DataParallelOptions` that :func:`rkd.train.fit` uses in this
    process (every process of a job must set the same); returns them."""
    global _options
    _options = replace(DataParallelOptions(), **options)
    return _options


def setup(device: str = "auto", *, backend: str | None = None, timeout_minutes: float | None = None,
          **options: Any) -> DataParallel | None:
    """Join the torchrun job this process was started by, if any.

    Reads torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``); with a world of one process (plain ``python``) it
    only records ``options`` and returns None. On ``device`` ``"cuda"`` (or ``"auto"``
    with a GPU) each process takes GPU ``LOCAL_RANK`` as its current device and the
    backend is NCCL; otherwise gloo. ``options``: see :class:`DataParallelOptions`.
    """
    configure(**options)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size < 2:
        return None
    if "LOCAL_RANK" not in os.environ:
        raise RuntimeError("WORLD_SIZE is set but LOCAL_RANK is not: start the processes with torchrun "
                           "(torchrun --nproc_per_node N -m rkd.experiments.launch ...)")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was asked for but CUDA is not available")
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"process {local_rank} of this machine has no GPU of its own "
                               f"({torch.cuda.device_count()} visible): start at most that many processes per "
                               f"machine (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        kwargs = {} if timeout_minutes is None else {"timeout": timedelta(minutes=timeout_minutes)}
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"), **kwargs)
    return DataParallel.current()


def teardown() -> None:
    """Leave the job (``destroy_process_group``), if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True in a single process and in rank 0 of a job: the process that writes files."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def rank_zero_decides(value: Any) -> Any:
    """``value`` as rank 0 has it, in every process of the job (``value`` itself outside a
    job). For decisions that every process must take alike, such as whether to train."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ------------------------------------------------------------------------------ gathering


def _gather_rows(local: Tensor, sizes: list[int], group) -> Tensor:
    """The ranks' rows concatenated in rank order (each rank holds ``sizes[rank]`` rows)."""
    local = local.contiguous()
    biggest = max(sizes)
    if local.shape[0] < biggest:  # all_gather needs one shape: pad, then cut the padding off
        local = torch.cat([local, local.new_zeros((biggest - local.shape[0], *local.shape[1:]))])
    parts = [torch.empty_like(local) for _ in sizes]
    dist.all_gather(parts, local, group=group)
    return torch.cat([part[:rows] for part, rows in zip(parts, sizes)])


class AllGatherRows(torch.autograd.Function):
    """All-gather the rows of every rank (``sizes[r]`` on rank r) into the global batch,
    differentiably: the backward sums the incoming gradient over the ranks (all-reduce)
    and returns this rank's rows of the sum, i.e. ``sum_q dL_q / d(own rows)``, the
    semantics of ``torch.distributed.nn.functional.all_gather`` (whose gloo backward is an
    all-to-all), for shards of unequal sizes. See the module docstring for why this sum
    makes DDP's average the single-process gradient."""

    @staticmethod
    def forward(ctx, local: Tensor, sizes: list[int], rank: int, group) -> Tensor:
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        return _gather_rows(local, sizes, group)

    @staticmethod
    def backward(ctx, grad: Tensor):
        summed = grad.contiguous().clone()  # reduced in place: never the engine's own buffer
        dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[:ctx.rank])
        return summed[start:start + ctx.sizes[ctx.rank]], None, None, None


# ------------------------------------------------------------------------------ the job


class DataParallel:
    """This process's place in a torchrun job, and the collectives a run needs.

    :func:`rkd.train.fit` uses :meth:`current` and trains data-parallel when it returns
    one; see the module docstring for what each part does.
    """

    def __init__(self, rank: int, world_size: int, local_world_size: int,
                 options: DataParallelOptions | None = None, group=None):
        self.rank, self.world_size, self.local_world_size = int(rank), int(world_size), int(local_world_size)
        self.options = options if options is not None else _options
        self.group = group
        self._sizes: list[int] | None = None  # the ranks' rows of the current step's global batch

    @classmethod
    def current(cls) -> DataParallel | None:
        """The job this process belongs to (``torch.distributed`` initialised, two or more
        processes), else None: a single process trains as always."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        world_size = dist.get_world_size()
        return cls(dist.get_rank(), world_size, int(os.environ.get("LOCAL_WORLD_SIZE", world_size)), _options)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, world_size={self.world_size}, {self.options})"

    # -------------------------------------------------------------- batches

    def shard(self, batch_size: int) -> range:
        """The positions of a global batch of ``batch_size`` that this process loads."""
        return shard_positions(batch_size, self.rank, self.world_size)

    def own_rows(self) -> range:
        """This process's rows of the current step's global batch (after :meth:`begin_batch`)."""
        if self._sizes is None:
            raise RuntimeError("DataParallel.own_rows before begin_batch: the global batch size is not known")
        return self.shard(sum(self._sizes))

    def begin_batch(self, batch_size: int) -> None:
        """The global batch of the coming step has ``batch_size`` items (the gathers need
        every rank's row count; they are a function of it, so no process is asked)."""
        self._sizes = shard_sizes(batch_size, self.world_size)

    def check_sampler(self, batch_sampler) -> None:
        if isinstance(batch_sampler, ShardedBatchSampler):
            raise ValueError("fit() shards the batches itself under torchrun: pass the global batch sampler "
                             "(the one a single process would use), not a ShardedBatchSampler")

    # -------------------------------------------------------------- gathering

    def gather(self, local: Tensor, *, differentiable: bool) -> Tensor:
        """This step's rows of every rank, in the global batch's order. ``differentiable``:
        gradients flow back to each rank's own rows (:class:`AllGatherRows`)."""
        if self._sizes is None:
            raise RuntimeError("DataParallel.gather before begin_batch: the global batch size is not known")
        if local.shape[0] != self._sizes[self.rank]:
            raise ValueError(f"rank {self.rank} holds {local.shape[0]} rows, but its shard of the global batch "
                             f"has {self._sizes[self.rank]}")
        if differentiable and local.requires_grad:
            return AllGatherRows.apply(local, self._sizes, self.rank, self.group)
        with torch.no_grad():
            return _gather_rows(local, self._sizes, self.group)

    def gather_outputs(self, outputs, *, differentiable: bool):
        """Every per-example tensor of a model's outputs (a dict following the output
        contract, or a tensor), gathered (see :meth:`gather`)."""
        if isinstance(outputs, Tensor):
            if outputs.dim() >= 1 and self._sizes is not None and outputs.shape[0] == self._sizes[self.rank]:
                return self.gather(outputs, differentiable=differentiable)
            return outputs
        if isinstance(outputs, Mapping):
            return {key: self.gather_outputs(value, differentiable=differentiable) for key, value in outputs.items()}
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.gather_outputs(value, differentiable=differentiable) for value in outputs)
        return outputs

    # -------------------------------------------------------------- agreeing

    def broadcast(self, value: Any) -> Any:
        """``value`` as rank 0 has it (any picklable object)."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def all_sum(self, tensor: Tensor) -> Tensor:
        summed = tensor.detach().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=self.group)
        return summed

    def stack(self, tensor: Tensor) -> Tensor:
        """Every rank's ``tensor`` (same shape everywhere), stacked: ``[world_size, *shape]``."""
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous(), group=self.group)
        return torch.stack(parts)

    def check_same(self, value: Any, what: str) -> None:
        """Raise unless every rank has the same ``value`` (a picklable object)."""
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value, group=self.group)
        if any(v != values[0] for v in values):
            listed = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
            raise RuntimeError(f"the processes of this job disagree on {what} ({listed})")

    def barrier(self) -> None:
        if dist.get_backend(self.group) == "nccl" and torch.cuda.is_available():
            dist.barrier(group=self.group, device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier(group=self.group)

    def share_random_state(self) -> None:
        """Give every process rank 0's global random states (torch CPU and the current
        CUDA device, NumPy, Python): the loss terms that draw (the triplet sampler) then
        draw the same numbers on every process. Each process's current CUDA device gets
        rank 0's current device's state (a checkpoint's per-device list would not)."""
        state = rng_state()
        state.pop("cuda", None)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_current"] = torch.cuda.get_rng_state()
        state = self.broadcast(state)
        set_rng_state(state)
        if "cuda_current" in state and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.set_rng_state(state["cuda_current"])

    # -------------------------------------------------------------- the model

    def syncs_batchnorm(self, distiller: nn.Module, device: torch.device) -> bool:
        """Whether the student's BatchNorm layers compute global statistics in this run."""
        student = getattr(distiller, "student", None)
        has_batchnorm = isinstance(student, nn.Module) and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in student.modules())
        if not has_batchnorm:
            return False
        wanted = self.options.sync_batchnorm
        if wanted and device.type != "cuda":
            raise ValueError(f"sync_batchnorm=True needs CUDA (PyTorch's SyncBatchNorm does not run on "
                             f"{device.type!r}); pass sync_batchnorm=None or False")
        return device.type == "cuda" if wanted is None else wanted

    def numerics(self, distiller: nn.Module, device: torch.device) -> dict[str, Any]:
        """What a checkpoint records of the parallel setting (a resume must use the same)."""
        setting: dict[str, Any] = {"world_size": self.world_size,
                                   "sync_batchnorm": self.syncs_batchnorm(distiller, device)}
        if any(term.splits_over_rows for term in _loss_terms(distiller)):
            setting["rkd_angle_anchors"] = self.options.angle_anchors
        return {"data_parallel": setting}

    @contextmanager
    def replicate(self, distiller: nn.Module, device: torch.device) -> Iterator[DistributedDataParallel]:
        """The distiller as DDP trains it: SyncBatchNorm (see :meth:`syncs_batchnorm`), the
        terms that split over rows shared as ``angle_anchors`` says, wrapped in
        DistributedDataParallel; all undone on exit.

        DDP holds every trainable parameter of the distiller (the student's and the loss
        terms'; the teacher is frozen). ``find_unused_parameters``: some are unused at some
        steps (the FitNet regressors after the hint stage, RRD's teacher projection, which
        only ever sees the teacher under no_grad); they keep no gradient, as in one process.
        """
        undo: list[Callable[[], None]] = []
        try:
            if self.syncs_batchnorm(distiller, device):
                undo.append(_use_sync_batchnorm(distiller.student))
            elif any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in distiller.student.modules()):
                why = "is switched off" if self.options.sync_batchnorm is False else "runs on CUDA only"
                warnings.warn(f"the student's BatchNorm statistics are computed per process on {device.type!r} "
                              f"(SyncBatchNorm {why}): the numbers are not those of one process", stacklevel=3)
            share = ANGLE_ANCHORS.get(self.options.angle_anchors)
            for term in _loss_terms(distiller):
                if term.splits_over_rows and (restore := share(term, self)) is not None:
                    undo.append(restore)
            device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
                if device.type == "cuda" else None
            # buffers (BatchNorm statistics, the RRD queue) are rank 0's at every forward: DDP's default
            yield DistributedDataParallel(distiller, device_ids=device_ids, find_unused_parameters=True,
                                          process_group=self.group)
        finally:
            for step in reversed(undo):
                step()


def _use_sync_batchnorm(module: nn.Module) -> Callable[[], None]:
    """Replace every BatchNorm layer under ``module`` by a SyncBatchNorm holding the very
    same parameters and statistics tensors; return the function that puts them back.
    (``nn.SyncBatchNorm.convert_sync_batchnorm`` does the same but cannot be undone, and
    the student must stay a plain module for evaluation, caching and one-process use.)"""
    replaced: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                synced = nn.SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats)
                if child.affine:
                    synced.weight, synced.bias = child.weight, child.bias
                synced.running_mean, synced.running_var = child.running_mean, child.running_var
                synced.num_batches_tracked = child.num_batches_tracked
                synced.train(child.training)
                setattr(parent, name, synced)
                replaced.append((parent, name, child))

    def restore() -> None:
        for parent, name, child in reversed(replaced):
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)

    return restore


def _loss_terms(distiller: nn.Module) -> list[LossTerm]:
    """The distiller's loss terms (none for a module that holds none)."""
    return [term for term in getattr(distiller, "terms", {}).values() if isinstance(term, LossTerm)]
