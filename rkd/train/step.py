"""The lean step: what runs on the accelerator, and how fast.

- **Precision.** ``"bf16"``: the student's and the teacher's forward passes run under
  ``torch.autocast`` in bfloat16 and hand their outputs to the loss terms in float32, so
  the terms (and the float64 Gram matrices of the relational losses) compute as in
  ``"fp32"``. ``"auto"``: bf16 on a CUDA device that supports it, fp32 elsewhere.
- **channels_last** memory format for the networks and the images (default: on CUDA).
- **The teacher under** ``torch.inference_mode``: no autograd bookkeeping at all. Its
  outputs are cloned into ordinary tensors, because the loss terms use them in autograd
  graphs (FitNet's MSE target, RRD's projection input) where inference tensors may not
  be saved for backward.
- **torch.compile** of the student and the teacher (optional).
- **Copies**: ``pin_memory`` and ``non_blocking`` host-to-device copies on CUDA.
- **Data parallelism** (``lean_models(..., parallel=...)``, see :mod:`rkd.train.distributed`):
  the student's outputs are all-gathered with gradients flowing back to each process's
  own rows, the teacher's without gradient, so that the loss terms see the global batch.

The Distiller (rkd/distill.py) runs the teacher under ``no_grad`` and every module in the
caller's precision; until it grows these options, :func:`lean_models` applies them for the
duration of a run by wrapping the student's and the teacher's ``forward`` (their
``state_dict`` is untouched) and :meth:`LeanModels.suspended` takes the wrapping off
around evaluations, which run in float32 as after training.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..registry import Registry

__all__ = ["StepOptions", "resolve_step_options", "lean_models", "LeanModels", "PRECISIONS"]

#: name -> the dtype the networks compute in (float32: no autocast)
PRECISIONS: Registry = Registry("precision")
PRECISIONS.register("fp32", torch.float32)
PRECISIONS.register("bf16", torch.bfloat16)

#: host reads of the guard's records on CUDA: one every this many steps
CUDA_CHECK_EVERY = 10


@dataclass(frozen=True)
class StepOptions:
    """How :func:`rkd.train.fit` runs a step on ``device`` (see the module docstring)."""

    device: torch.device
    precision: str
    channels_last: bool
    compile: str | None  # a torch.compile backend, or None
    check_every: int
    pin_memory: bool
    non_blocking: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for float32 (no autocast)."""
        dtype = PRECISIONS.get(self.precision)
        return None if dtype == torch.float32 else dtype

    def numerics(self) -> dict[str, Any]:
        """The options that change the numbers a run gives (kept in checkpoints)."""
        return {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compile}

    def to_device(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory_format = torch.channels_last if self.channels_last and images.dim() == 4 else torch.preserve_format
        images = images.to(self.device, non_blocking=self.non_blocking, memory_format=memory_format)
        return images, labels.to(self.device, non_blocking=self.non_blocking)


def resolve_step_options(device: str | torch.device, *, precision: str = "auto", channels_last: bool | None = None,
                         compile: bool | str = False, check_every: int | None = None) -> StepOptions:
    """Fill in the ``"auto"`` / ``None`` defaults for ``device`` and check the values."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    PRECISIONS.get(precision)  # an unknown name lists the valid ones
    if channels_last is None:
        channels_last = cuda
    if not isinstance(channels_last, bool):
        raise TypeError(f"channels_last must be a bool or None (None: on CUDA only), got {channels_last!r}")
    if compile is True:
        backend = "inductor"
    elif compile is False or compile is None:
        backend = None
    elif isinstance(compile, str):
        backend = compile
    else:
        raise TypeError(f"compile must be a bool or a torch.compile backend name, got {compile!r}")
    if check_every is None:
        check_every = CUDA_CHECK_EVERY if cuda else 1
    if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
        raise ValueError(f"check_every must be a positive int (1: check every step), got {check_every!r}")
    return StepOptions(device=device, precision=precision, channels_last=channels_last, compile=backend,
                       check_every=check_every, pin_memory=cuda, non_blocking=cuda)


def _to_float32(outputs):
    """Autocast outputs as float32 ordinary tensors (the loss terms' inputs)."""
    if isinstance(outputs, torch.Tensor):
        if outputs.is_floating_point() and outputs.dtype != torch.float32 and outputs.dtype != torch.float64:
            return outputs.float()
        return outputs
    if isinstance(outputs, dict):
        return {k: _to_float32(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_to_float32(v) for v in outputs)
    return outputs


def _ordinary(outputs):
    """Inference tensors cloned into ordinary ones, low precision made float32. A mapping
    that is not a dict (:class:`rkd.distill.PrecomputedRows`) is kept as it is: it gathers
    ordinary float32 tensors when a loss term reads them."""
    if isinstance(outputs, torch.Tensor):
        converted = _to_float32(outputs)
        return converted.clone() if converted.is_inference() else converted
    if isinstance(outputs, dict):
        return {k: _ordinary(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_ordinary(v) for v in outputs)
    return outputs


def _wrapped_forward(forward, device_type: str, dtype: torch.dtype | None, parallel=None, *, teacher: bool):
    """The student's forward under autocast to ``dtype`` (None: none), its outputs made
    float32 and, data-parallel, gathered with their gradient; with ``teacher``, the same in
    inference mode, its outputs made ordinary tensors (:func:`_ordinary`) and gathered
    without one."""
    def wrapped(*args, **kwargs):
        with torch.inference_mode() if teacher else nullcontext():
            with torch.autocast(device_type, dtype=dtype) if dtype is not None else nullcontext():
                outputs = forward(*args, **kwargs)
        if teacher:
            outputs = _ordinary(outputs)
        elif dtype is not None:
            outputs = _to_float32(outputs)
        if parallel is not None:
            outputs = parallel.gather_outputs(outputs, differentiable=not teacher)
        return outputs

    return wrapped


class LeanModels:
    """The student's and teacher's forwards wrapped for a run (see :func:`lean_models`)."""

    def __init__(self):
        self._wrapped: list[tuple[nn.Module, Any, Any]] = []  # module, wrapped forward, previous instance attr

    def wrap(self, module: nn.Module, forward) -> None:
        self._wrapped.append((module, forward, vars(module).get("forward")))
        module.forward = forward

    def unwrap(self) -> None:
        for module, _forward, previous in reversed(self._wrapped):
            if previous is None:
                vars(module).pop("forward", None)
            else:
                module.forward = previous

    def rewrap(self) -> None:
        for module, forward, _previous in self._wrapped:
            module.forward = forward

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """The plain forwards for the duration of the block (evaluations)."""
        self.unwrap()
        try:
            yield
        finally:
            self.rewrap()


@contextmanager
def lean_models(distiller: nn.Module, options: StepOptions, parallel=None) -> Iterator[LeanModels]:
    """Apply ``options`` to the distiller's student and teacher for the block; with
    ``parallel`` (a :class:`rkd.train.distributed.DataParallel`), gather their outputs."""
    student = getattr(distiller, "student", None)
    teacher = getattr(distiller, "teacher", None)
    lean = LeanModels()
    device_type, dtype = options.device.type, options.autocast_dtype
    if options.channels_last:
        distiller.to(memory_format=torch.channels_last)
    if isinstance(student, nn.Module) and (dtype is not None or parallel is not None):
        lean.wrap(student, _wrapped_forward(student.forward, device_type, dtype, parallel, teacher=False))
    if isinstance(teacher, nn.Module):
        lean.wrap(teacher, _wrapped_forward(teacher.forward, device_type, dtype, parallel, teacher=True))
    if options.compile is not None:
        for module in (student, teacher):
            if isinstance(module, nn.Module):
                module.compile(backend=options.compile)
    try:
        yield lean
    finally:
        lean.unwrap()
