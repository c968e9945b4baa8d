"""Checkpoints: what a resumed run needs to end exactly as an uninterrupted one, written
atomically and checked on resume.

A checkpoint holds everything a step depends on that is not rebuilt identically by the
command that started the run: the distiller's state except the frozen teacher (student,
FitNet regressors, RRD projections *and the RRD queue*, batch-norm statistics), the
optimiser and scheduler states, the torch (CPU and, when used, CUDA), NumPy and Python
random states, the step, the running losses, the evaluation history, the seed of the
batches' random transforms, the numerics (precision, channels_last, compile) and the
batch sampler's state with a fingerprint of the last batch used.

On resume, a checkpoint of another format, configuration, method, model, sampler or
numerics is refused (:class:`CheckpointMismatchError`) rather than silently giving
another result; one holding arbitrary pickled objects is never unpickled
(:class:`rkd.runtime.UnsafeCheckpointError`). Checkpoints are written atomically
(temporary file, then rename); a temporary file orphaned by a kill is removed by the
next run.

Data parallelism (:mod:`rkd.train.distributed`): every process loads the same
checkpoint; only rank 0 writes (``Checkpointer(..., writes=False)`` elsewhere, whose
:meth:`Checkpointer.save` only keeps count).
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..runtime import atomic_torch_save, safe_torch_load

__all__ = ["CHECKPOINT_FORMAT", "CheckpointMismatchError", "Checkpointer", "Resumed", "trainable_state", "plain",
           "rng_state", "set_rng_state"]

#: Version of the checkpoint layout written by :func:`rkd.train.fit`; a checkpoint of
#: another layout is refused instead of being half-understood. Format 3: the random
#: transforms of each batch are seeded from ``(data_seed, step)`` (format 2 drew them
#: from the global generators in turn), and the evaluation history and numerics are kept.
#: Format 4: a method's stages carry no step fractions (each stage is a run of its own).
CHECKPOINT_FORMAT = 4


class CheckpointMismatchError(ValueError):
    """A checkpoint that was not written by this run's configuration, model or sampler
    (or by another checkpoint format), so resuming from it would not give this run's result."""


@dataclass
class Resumed:
    """What a checkpoint hands to the loop (a fresh run: step 0 and empty values)."""

    step: int = 0
    running_losses: dict[str, list[float]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    last_batch: str | None = None
    data_seed: int | None = None
    from_checkpoint: bool = False


def trainable_state(distiller: nn.Module) -> dict[str, torch.Tensor]:
    """The distiller's state_dict without the frozen teacher: the teacher is an input
    of the run, not its state."""
    return {k: v for k, v in distiller.state_dict().items() if not k.startswith("teacher.")}


def rng_state() -> dict[str, Any]:
    """Every global random state a step may draw from, in a weights_only-loadable form."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": random.getstate(),
    }
    # only a run that uses CUDA has CUDA random state worth keeping; asking an idle
    # machine for it would start a CUDA context
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global random states :func:`rng_state` saved: torch's, and NumPy's and
    Python's where ``state`` has them; CUDA's only where CUDA is available with as many
    devices as were saved."""
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        saved = state["numpy"]
        np.random.set_state({
            "bit_generator": saved["bit_generator"],
            "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"],
            "gauss": saved["gauss"],
        })
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def plain(value: Any) -> Any:
    """``value`` as a checkpoint holds it (``weights_only``): numbers, strings, None, and
    dicts and lists of them; a one-element tensor as its number, anything else as its repr
    (metrics such as few-shot's ``{"5-way": {"accuracy": ..., "ci95": ...}}`` nest)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, int, str, type(None))):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return repr(value)


def method_signature(distiller: nn.Module) -> dict[str, Any] | None:
    """The distiller's method as plain data: name, stages with their term weights, term
    options. Two methods with equal signatures train identically."""
    method = getattr(distiller, "method", None)
    if method is None or not hasattr(method, "stages"):
        return None
    return {
        "name": method.name,
        "stages": [[stage.name, plain(stage.terms)] for stage in method.stages],
        "options": plain(getattr(method, "term_options", {})),
    }


def describe_method(signature: dict[str, Any] | None) -> str:
    if signature is None:
        return "no method"
    stages = "; ".join(
        f"{name}: " + ", ".join(f"{term} x{weight:g}" for term, weight in terms.items())
        for name, terms in signature["stages"]
    )
    return f"{signature['name']!r} ({stages})"


def _difference(saved: Any, current: dict[str, Any]) -> str:
    if not isinstance(saved, dict):
        return f"its configuration is {saved!r}"
    keys = sorted(set(saved) | set(current))
    return ", ".join(
        f"{k}={saved.get(k)!r} there, {current.get(k)!r} here" for k in keys if saved.get(k) != current.get(k)
    )


def remove_orphaned_temporaries(path: Path) -> None:
    """Delete temporary files left by a run killed while writing ``path`` (see
    :func:`rkd.runtime.atomic_write`); nothing reads them, they only take disk space."""
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        orphan.unlink(missing_ok=True)


class Checkpointer:
    """Loads (with every check) and saves the checkpoint of one run at ``path``."""

    def __init__(self, path: str | Path, config, distiller: nn.Module, optimizer, scheduler,
                 numerics: dict[str, Any], writes: bool = True):
        self.path = Path(path)
        #: False in the processes of a data-parallel run other than rank 0
        self.writes = writes
        self.config = asdict(config)
        self.distiller, self.optimizer, self.scheduler = distiller, optimizer, scheduler
        self.numerics = numerics
        #: the step of the checkpoint on disk (None: there is none)
        self.saved_step: int | None = None
        if writes:
            remove_orphaned_temporaries(self.path)

    def _check_written_by_this_run(self, state: dict, path: Path) -> None:
        """Refuse a checkpoint of another configuration, method or numerics, saying which."""
        signature, again = method_signature(self.distiller), "delete it or pass another checkpoint_path"
        written = (
            ("config", self.config, lambda saved: f"by a run with another configuration "
                                                  f"({_difference(saved, self.config)})", again),
            ("method", signature, lambda saved: f"for method {describe_method(saved)}, this run trains "
                                                f"{describe_method(signature)}", again),
            ("numerics", self.numerics, lambda saved: f"with other numerics ({_difference(saved, self.numerics)}), "
                                                      f"which give other results",
             "pass the fit() options of the first run, or delete the checkpoint to start afresh"),
        )
        for entry, expected, describe, advice in written:
            if state.get(entry) != expected:
                raise CheckpointMismatchError(f"checkpoint {path} was written {describe(state.get(entry))}; {advice}")

    def load(self, check_sampler) -> Resumed:
        """Restore the state of the checkpoint on disk into the distiller, optimiser,
        scheduler and global random generators; a fresh :class:`Resumed` when there is none.
        ``check_sampler(saved_state, step, path)`` compares the sampler's state."""
        path = self.path
        if not path.is_file():
            return Resumed()
        # on the CPU: random states must be CPU tensors; load_state_dict copies the rest to the device
        state = safe_torch_load(path, map_location="cpu")
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointMismatchError(
                f"checkpoint {path} is not a training checkpoint of format {CHECKPOINT_FORMAT} "
                f"(found format {found!r}); delete it or pass another checkpoint_path"
            )
        self._check_written_by_this_run(state, path)
        step = int(state["step"])
        check_sampler(state.get("sampler"), step, path)
        try:
            missing, unexpected = self.distiller.load_state_dict(state["distiller"], strict=False)
        except RuntimeError as err:  # shapes differ: another embedding size or network
            raise CheckpointMismatchError(
                f"checkpoint {path} does not fit this model: {err}; delete it or pass another checkpoint_path"
            ) from None
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise CheckpointMismatchError(
                f"checkpoint {path} does not match this model: missing {missing}, unexpected "
                f"{unexpected}; delete it or pass another checkpoint_path"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.saved_step = step
        return Resumed(
            step=step,
            running_losses={k: list(v) for k, v in state["running_losses"].items()},
            history=[dict(entry) for entry in state.get("history", [])],
            last_batch=state.get("last_batch"),
            data_seed=state.get("data_seed"),
            from_checkpoint=True,
        )

    def save(self, step: int, *, sampler_state, last_batch: str | None, running_losses, history,
             data_seed: int) -> None:
        """Write the checkpoint of ``step`` atomically (the new one or the old one, never a
        half-written file): the distiller's trainable state, optimiser, scheduler, random
        states, the given sampler state, last batch, running losses, history and data seed.
        A process that does not write (not rank 0) only records the step."""
        if not self.writes:
            self.saved_step = step  # rank 0 wrote it
            return
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "step": step,
                "config": self.config,
                "method": method_signature(self.distiller),
                "numerics": self.numerics,
                "distiller": trainable_state(self.distiller),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "sampler": sampler_state,
                "last_batch": last_batch,
                "running_losses": running_losses,
                "history": history,
                "data_seed": data_seed,
            },
            self.path,
        )
        self.saved_step = step

    def resume_hint(self) -> str:
        """A sentence for error messages: which checkpoint is intact."""
        if self.saved_step is None:
            return ""
        return f" The checkpoint {self.path} (step {self.saved_step}) is intact."
