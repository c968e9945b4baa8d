"""The one training loop: a :class:`~rkd.distill.Distiller` (student, frozen teacher and
weighted loss terms) trained for a fixed number of steps, with checkpoints that make a
killed run resume to exactly the same result.

Every method of the paper goes through :func:`fit`; what differs between methods is the
set of loss terms the Distiller holds, never a branch here.

Resuming exactly
----------------
A checkpoint holds everything a step depends on that is not rebuilt identically by the
command that started the run: the distiller's state except the frozen teacher (student,
FitNet regressors, RRD projections *and the RRD queue*, batch-norm statistics), the
optimiser and scheduler states, the torch (CPU and, when used, CUDA), NumPy and Python
random states, the step, the running losses, and the batch sampler's state together with
a fingerprint of the last batch it handed out. The sampler's position is re-derived from
the step: rkd's samplers draw epoch ``e`` from ``(seed, e)`` alone, so a resumed run
re-draws the epoch and skips the batches already used (without loading their images).
On resume the sampler's saved state and the last batch's fingerprint are compared with
the re-derived ones, so a sampler that cannot be resumed this way (one that reshuffles
from the global RNG on every pass, or one with another seed) is refused rather than
silently giving another result.

Checkpoints are written atomically (temporary file, then rename): a run killed at any
point, even in the middle of writing one, leaves the previous checkpoint intact; the
orphaned temporary file is removed by the next run.
"""
from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from .registry import Registry
from .runtime import atomic_torch_save, safe_torch_load

__all__ = [
    "TrainConfig",
    "TrainResult",
    "fit",
    "NonFiniteLossError",
    "CheckpointMismatchError",
    "OPTIMIZERS",
    "CHECKPOINT_FORMAT",
]

#: Version of the checkpoint layout written by :func:`fit`; a checkpoint of another
#: layout is refused instead of being half-understood.
CHECKPOINT_FORMAT = 2

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register(
    "adam", lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
)
OPTIMIZERS.register(
    "sgd",
    lambda params, cfg: torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=False
    ),
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result, apart from the models and data.

    Schedules are in optimiser steps; presets convert the paper's epochs to steps.
    """

    steps: int
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    checkpoint_every: int = 0

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        OPTIMIZERS.get(self.optimizer)  # fail early on an unknown optimiser name
        if any(not 0 < m for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing positive step numbers, got {self.milestones}")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ValueError(
                f"checkpoint_every must be an int >= 0 (0: only at the end), got {self.checkpoint_every!r}"
            )


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    losses: dict[str, float]  # mean of each weighted term over the last epoch-sized window
    metrics: dict[str, Any] = field(default_factory=dict)


class NonFiniteLossError(FloatingPointError):
    """NaN or inf in a training step: in the input batch, in the student's outputs or in a
    loss term. Training stops at that step, before the optimiser uses the values; the
    message gives the step number (1-based, as ``on_step`` counts)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint that was not written by this run's configuration, model or sampler
    (or by another checkpoint format), so resuming from it would not give this run's result."""


# ---------------------------------------------------------------------------- batches


def _fingerprint(indices) -> str:
    """A short digest of a batch's dataset indices: enough to tell two batches apart."""
    plain = [int(i) if isinstance(i, (int, np.integer)) else repr(i) for i in indices]
    return hashlib.sha256(repr(plain).encode()).hexdigest()[:16]


def _batches(
    dataset: Dataset,
    batch_sampler,
    start_step: int,
    total_steps: int,
    previous_batch: str | None = None,
) -> Iterator[tuple[int, Any, str]]:
    """Yield ``(step, batch, fingerprint)`` from ``start_step`` on, epoch after epoch.

    The sampler's order depends only on its seed and the epoch (``set_epoch``), so a
    resumed run re-derives its position from the step number alone: it draws the
    current epoch again and skips the index lists already used, without loading their
    images. ``previous_batch`` is the fingerprint of the batch of step
    ``start_step - 1`` recorded by the interrupted run; when that batch lies in the
    current epoch it is checked against the re-drawn one.
    """
    per_epoch = len(batch_sampler)
    if per_epoch < 1:
        raise ValueError("the batch sampler yields no batches: the dataset is smaller than one batch")
    step = start_step
    while step < total_steps:
        epoch, position = divmod(step, per_epoch)
        if hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(epoch)
        drawn = 0
        for indices in batch_sampler:
            drawn += 1
            if drawn > per_epoch:
                break
            if drawn <= position:
                if drawn == position and previous_batch is not None and _fingerprint(indices) != previous_batch:
                    raise CheckpointMismatchError(
                        f"the batch sampler does not re-draw the batches of the interrupted run (batch "
                        f"{drawn} of epoch {epoch + 1} differs), so resuming at step {step} would train on "
                        f"other data. Use a sampler whose batches depend only on its seed and the epoch "
                        f"(set_epoch), such as rkd.data.MPerClassSampler, with the seed of the first run; "
                        f"or delete the checkpoint to start afresh."
                    )
                continue
            yield step, default_collate([dataset[j] for j in indices]), _fingerprint(indices)
            step += 1
            if step >= total_steps:
                return  # before drawing another batch: the sampler's state stays that of the last step
        if drawn != per_epoch and step < total_steps:
            # epochs are counted in len() batches; a sampler that yields another number
            # would put a resumed run at another point of its sequence
            raise ValueError(
                f"the batch sampler yielded {'more than ' if drawn > per_epoch else ''}"
                f"{min(drawn, per_epoch)} batches in epoch {epoch + 1} but its len() is {per_epoch}; "
                f"make __len__ return the number of batches one pass yields"
            )


def _plain_sampler_state(batch_sampler) -> dict[str, Any] | None:
    """The sampler's ``state_dict()`` reduced to plain values (a checkpoint must load with
    ``weights_only=True``), or None for a sampler without one."""
    state_dict = getattr(batch_sampler, "state_dict", None)
    if not callable(state_dict):
        return None
    return {k: v for k, v in dict(state_dict()).items() if isinstance(v, (bool, int, float, str, type(None)))}


def _check_sampler_state(saved: dict[str, Any] | None, batch_sampler, step: int, path) -> None:
    """Compare the sampler state saved with the checkpoint with this run's sampler.

    Keys other than ``epoch`` and ``position`` (the seed, for rkd's samplers) must be
    equal; ``epoch`` and ``position`` must be where the step puts them (an rkd sampler
    that has just handed out the last batch of epoch e reports ``(e, len)``, the same
    point as ``(e + 1, 0)``).
    """
    current = _plain_sampler_state(batch_sampler)
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


# ---------------------------------------------------------------------------- checkpoint state


def _trainable_state(distiller: nn.Module) -> dict[str, torch.Tensor]:
    # the frozen teacher is an input of the run, not its state: leave it out of checkpoints
    return {k: v for k, v in distiller.state_dict().items() if not k.startswith("teacher.")}


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(state: dict[str, Any]) -> None:
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


def _method_signature(distiller: nn.Module) -> dict[str, Any] | None:
    """The distiller's method as plain data: name, stages with their term weights and
    fractions, term options. Two methods with equal signatures train identically."""
    method = getattr(distiller, "method", None)
    if method is None or not hasattr(method, "stages"):
        return None

    def plain(value):
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)

    return {
        "name": method.name,
        "stages": [[stage.name, plain(stage.terms), stage.fraction] for stage in method.stages],
        "options": plain(getattr(method, "term_options", {})),
    }


def _describe_method(signature: dict[str, Any] | None) -> str:
    if signature is None:
        return "no method"
    stages = "; ".join(
        f"{name}: " + ", ".join(f"{term} x{weight:g}" for term, weight in terms.items())
        for name, terms, _fraction in signature["stages"]
    )
    return f"{signature['name']!r} ({stages})"


def _remove_orphaned_temporaries(path: Path) -> None:
    """Delete temporary files left by a run killed while writing ``path`` (see
    :func:`rkd.runtime.atomic_write`); nothing reads them, they only take disk space."""
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        orphan.unlink(missing_ok=True)


def _config_difference(saved: Any, current: dict[str, Any]) -> str:
    if not isinstance(saved, dict):
        return f"its configuration is {saved!r}"
    keys = sorted(set(saved) | set(current))
    return ", ".join(
        f"{k}={saved.get(k)!r} there, {current.get(k)!r} here" for k in keys if saved.get(k) != current.get(k)
    )


# ---------------------------------------------------------------------------- the loop


def fit(
    distiller: nn.Module,
    dataset: Dataset,
    batch_sampler,
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    evaluate: Callable[[], dict[str, Any]] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train ``distiller`` for ``config.steps`` steps and return its losses and metrics.

    ``distiller(images, labels)`` returns a dict of weighted loss terms; their sum is
    minimised over ``distiller.trainable_parameters()`` (the student and any learned
    loss parameters, such as FitNet regressors or RRD projections; never the teacher).

    ``batch_sampler`` yields lists of dataset indices, ``len(batch_sampler)`` per epoch.
    For exact resumption its batches must depend only on its seed and the epoch number
    given to ``set_epoch`` (rkd's samplers), or be the same on every pass.

    With ``checkpoint_path``, the trainable state (including the RRD queue), optimiser,
    scheduler, random states, sampler state and step are written atomically every
    ``config.checkpoint_every`` steps and at the end; a run started again with the same
    arguments resumes from the last one and ends with exactly the result of an
    uninterrupted run. A checkpoint written by another configuration, method, model or
    sampler is refused (:class:`CheckpointMismatchError`), and one holding arbitrary
    pickled objects is never unpickled (:class:`rkd.runtime.UnsafeCheckpointError`).

    ``evaluate`` (no arguments, returns a dict) runs once after the last step; its
    result is ``metrics``. ``on_step(step, losses)`` is called after each step (and
    after its checkpoint), with the number of steps done and the weighted loss terms
    as floats.

    Raises:
        NonFiniteLossError: NaN or inf in a batch, in the student's ``"embedding"`` /
            ``"logits"`` or in a loss term; raised at that step, before the optimiser
            step, naming the step. Any other error raised inside a step carries a note
            naming the step.
        CheckpointMismatchError: see above.
    """
    device = torch.device(device)
    distiller.to(device)
    params = [p for p in distiller.trainable_parameters() if p.requires_grad]
    if not params:
        raise ValueError("the distiller has no trainable parameters")
    optimizer = OPTIMIZERS.get(config.optimizer)(params, config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma)

    start_step = 0
    window = max(1, min(len(batch_sampler), config.steps))
    running: dict[str, list[float]] = {}
    config_dict = asdict(config)
    previous_batch: str | None = None
    if checkpoint_path is not None:
        checkpoint_path = Path(checkpoint_path)
        _remove_orphaned_temporaries(checkpoint_path)
    if checkpoint_path is not None and checkpoint_path.is_file():
        # on the CPU: random states must be CPU tensors; load_state_dict copies the rest to the device
        state = safe_torch_load(checkpoint_path, map_location="cpu")
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint_path} is not a training checkpoint of format {CHECKPOINT_FORMAT} "
                f"(found format {found!r}); delete it or pass another checkpoint_path"
            )
        if state.get("config") != config_dict:
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint_path} was written by a run with another configuration "
                f"({_config_difference(state.get('config'), config_dict)}); delete it or pass another "
                f"checkpoint_path"
            )
        if state.get("method") != _method_signature(distiller):
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint_path} was written for method {_describe_method(state.get('method'))}, "
                f"this run trains {_describe_method(_method_signature(distiller))}; delete it or pass another "
                f"checkpoint_path"
            )
        start_step = int(state["step"])
        _check_sampler_state(state.get("sampler"), batch_sampler, start_step, checkpoint_path)
        try:
            missing, unexpected = distiller.load_state_dict(state["distiller"], strict=False)
        except RuntimeError as err:  # shapes differ: another embedding size or network
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint_path} does not fit this model: {err}; delete it or pass another "
                f"checkpoint_path"
            ) from None
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint_path} does not match this model: missing {missing}, unexpected "
                f"{unexpected}; delete it or pass another checkpoint_path"
            )
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        running = {k: list(v) for k, v in state["running_losses"].items()}
        previous_batch = state.get("last_batch")

    last_saved = start_step if checkpoint_path is not None and checkpoint_path.is_file() else None

    def save(step: int, last_batch: str | None) -> None:
        nonlocal last_saved
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "step": step,
                "config": config_dict,
                "method": _method_signature(distiller),
                "distiller": _trainable_state(distiller),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "sampler": _plain_sampler_state(batch_sampler),
                "last_batch": last_batch,
                "running_losses": running,
            },
            checkpoint_path,
        )
        last_saved = step

    # The student's outputs are checked for NaN/inf as they are produced (a hook), so a
    # diverged student is reported as such even when a loss fails on its NaN first (the
    # triplet sampler's multinomial, say). The flags stay on the device: the one sync per
    # step is the loss read-out below.
    output_flags: dict[str, torch.Tensor] = {}

    def check_outputs(module, inputs, outputs):
        if isinstance(outputs, dict):
            for key in ("embedding", "logits"):
                value = outputs.get(key)
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    output_flags[key] = torch.isfinite(value.detach()).all()

    student = getattr(distiller, "student", None)
    hook = student.register_forward_hook(check_outputs) if isinstance(student, nn.Module) else None

    def non_finite(step: int, what: str, advice: str) -> NonFiniteLossError:
        resume = (f" The checkpoint {checkpoint_path} (step {last_saved}) is intact."
                  if last_saved is not None else "")
        return NonFiniteLossError(
            f"{what} at step {step + 1} of {config.steps} ({desc}); training stopped before the optimiser "
            f"used it. {advice}{resume}"
        )

    def first_bad(step: int, input_ok: bool, outputs_ok: dict[str, bool],
                  loss_values: dict[str, float]) -> NonFiniteLossError | None:
        if not input_ok:
            return non_finite(step, "the input batch holds NaN or inf values",
                              "Check the dataset and its transform (a division by a zero standard deviation?).")
        for key, ok in outputs_ok.items():
            if not ok:
                return non_finite(
                    step, f"the student's {key!r} output is NaN or inf",
                    f"The weights have probably diverged: lower the learning rate (lr={config.lr:g}) or check "
                    f"the loss weights.")
        for name, value in loss_values.items():
            if not math.isfinite(value):
                return non_finite(
                    step, f"loss term {name!r} is {value}",
                    f"Lower the learning rate (lr={config.lr:g}) or check the inputs and the loss weights.")
        return None

    distiller.train()
    bar = tqdm(total=config.steps, initial=start_step, desc=desc, disable=not progress, leave=False)
    batches = _batches(dataset, batch_sampler, start_step, config.steps, previous_batch)
    next_step, last_fingerprint = start_step, previous_batch
    try:
        while True:
            try:
                step, (images, labels), fingerprint = next(batches)
            except StopIteration:
                break
            except Exception as err:  # a reader error: say at which step it stopped the run
                err.add_note(
                    f"(raised while loading the batch of training step {next_step + 1} of {config.steps}, {desc})")
                raise
            next_step = step + 1
            distiller.set_stage(distiller.stage_at(step, config.steps))
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            output_flags.clear()
            input_flag = (torch.isfinite(images).all() if images.is_floating_point()
                          else torch.ones((), dtype=torch.bool, device=images.device))
            try:
                losses = distiller(images, labels)
            except Exception as err:
                problem = first_bad(step, bool(input_flag), {k: bool(v) for k, v in output_flags.items()}, {})
                if problem is not None:
                    raise problem from err
                err.add_note(f"(raised in training step {step + 1} of {config.steps}, {desc})")
                raise
            names = list(losses)
            total = sum(losses.values())
            # One device-to-host copy per step carries the loss values (for the log) and
            # the NaN/inf flags of the batch and of the student's outputs.
            flag_names = list(output_flags)
            read_out = torch.stack([
                *(losses[name].detach().to(torch.float64) for name in names),
                input_flag.to(device=images.device, dtype=torch.float64),
                *(output_flags[key].to(device=images.device, dtype=torch.float64) for key in flag_names),
            ]).tolist()
            loss_values = dict(zip(names, read_out[: len(names)]))
            outputs_ok = {key: bool(flag) for key, flag in zip(flag_names, read_out[len(names) + 1:])}
            problem = first_bad(step, bool(read_out[len(names)]), outputs_ok, loss_values)
            if problem is not None:
                raise problem
            for name, value in loss_values.items():
                running.setdefault(name, []).append(value)
                del running[name][:-window]
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            scheduler.step()
            done, last_fingerprint = step + 1, fingerprint
            if checkpoint_path is not None and config.checkpoint_every and done % config.checkpoint_every == 0:
                save(done, fingerprint)
            bar.update(1)
            if on_step is not None:
                on_step(done, {name: vals[-1] for name, vals in running.items()})
            if done % 10 == 0 or done == config.steps:
                bar.set_postfix(loss=f"{sum(loss_values.values()):.4f}")
        if checkpoint_path is not None and start_step < config.steps and last_saved != config.steps:
            save(config.steps, last_fingerprint)
    finally:
        bar.close()
        if hook is not None:
            hook.remove()

    distiller.eval()
    metrics = evaluate() if evaluate is not None else {}
    return TrainResult(
        steps=config.steps,
        resumed_from=start_step,
        losses={k: sum(v) / len(v) for k, v in running.items()},
        metrics=metrics,
    )
