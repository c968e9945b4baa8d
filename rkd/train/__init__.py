"""The one training loop: a :class:`~rkd.distill.Distiller` (student, frozen teacher and
weighted loss terms) trained for a fixed number of steps, with checkpoints that make a
killed run resume to exactly the same result, fed by a DataLoader with workers.

Every method of the paper goes through :func:`fit`; what differs between methods is the
set of loss terms the Distiller holds, never a branch here.

Modules, each one concern:

- :mod:`rkd.train.config`: :class:`TrainConfig`, :class:`TrainResult`, :data:`OPTIMIZERS`;
- :mod:`rkd.train.stream`: the resumable batch stream (which indices each step loads);
- :mod:`rkd.train.loader`: the DataLoader (workers, per-step seeds, pinned memory);
- :mod:`rkd.train.image_cache`: the optional decoded-image cache;
- :mod:`rkd.train.step`: the lean step (bf16 autocast, channels_last, the teacher under
  inference_mode, torch.compile);
- :mod:`rkd.train.guard`: the NaN/inf guard;
- :mod:`rkd.train.checkpoint`: checkpoints, written atomically and checked on resume;
- :mod:`rkd.train.log`: the CSV training log;
- :mod:`rkd.train.distributed`: several processes under ``torchrun`` training one model on
  the single-process batch (DistributedDataParallel, gathered losses), with
  RKD-A's "local anchors" (each process the triples whose vertex is one of its rows,
  through the loss terms that split over rows);
- :mod:`rkd.train.loop`: :func:`fit`, which puts them in order.
"""
from .checkpoint import CHECKPOINT_FORMAT, CheckpointMismatchError
from .checkpoint import trainable_state as _trainable_state  # noqa: F401  (tests/test_resume.py)
from .config import OPTIMIZERS, TrainConfig, TrainResult
from .guard import NonFiniteLossError, ProcessesDisagreeError
from .image_cache import DecodedImageCache
from .loop import fit

__all__ = [
    "TrainConfig",
    "TrainResult",
    "fit",
    "NonFiniteLossError",
    "ProcessesDisagreeError",
    "CheckpointMismatchError",
    "OPTIMIZERS",
    "CHECKPOINT_FORMAT",
    "DecodedImageCache",
]
