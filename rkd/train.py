"""The one training loop: a :class:`~rkd.distill.Distiller` (student, frozen teacher and
weighted loss terms) trained for a fixed number of steps, with checkpoints that make a
killed run resume to exactly the same result.

Every method of the paper goes through :func:`fit`; what differs between methods is the
set of loss terms the Distiller holds, never a branch here.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from .registry import Registry
from .runtime import atomic_torch_save, safe_torch_load

__all__ = ["TrainConfig", "TrainResult", "fit", "NonFiniteLossError", "OPTIMIZERS"]


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
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        OPTIMIZERS.get(self.optimizer)  # fail early on an unknown optimiser name
        if any(not 0 < m for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing positive step numbers, got {self.milestones}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0: only at the end), got {self.checkpoint_every}")


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    losses: dict[str, float]  # mean of each weighted term over the last epoch-sized window
    metrics: dict[str, Any] = field(default_factory=dict)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf: training stops instead of going on with garbage."""


def _batches(dataset: Dataset, batch_sampler, start_step: int, total_steps: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(step, batch)`` from ``start_step`` on, epoch after epoch.

    The sampler's order depends only on its seed and the epoch (``set_epoch``), so a
    resumed run re-derives its position from the step number alone: it skips the
    index lists already used in the current epoch without loading their images.
    """
    per_epoch = len(batch_sampler)
    if per_epoch < 1:
        raise ValueError("the batch sampler yields no batches: the dataset is smaller than one batch")
    step = start_step
    while step < total_steps:
        epoch, position = divmod(step, per_epoch)
        if hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(epoch)
        for i, indices in enumerate(batch_sampler):
            if i < position:
                continue
            if step >= total_steps:
                return
            yield step, default_collate([dataset[j] for j in indices])
            step += 1


def _trainable_state(distiller: nn.Module) -> dict[str, torch.Tensor]:
    # the frozen teacher is an input of the run, not its state: leave it out of checkpoints
    return {k: v for k, v in distiller.state_dict().items() if not k.startswith("teacher.")}


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

    With ``checkpoint_path``, the model, optimiser, scheduler and RNG states and the
    step are written atomically every ``config.checkpoint_every`` steps and at the
    end; a run started again with the same arguments resumes from the last one and
    ends with exactly the result of an uninterrupted run. ``evaluate`` (no arguments,
    returns a dict) runs once after the last step; its result is ``metrics``.
    ``on_step(step, losses)`` is called after each step (and after its checkpoint),
    with the number of steps done and the weighted loss terms as floats.
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
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        state = safe_torch_load(checkpoint_path, map_location=device)
        if state.get("config") != config_dict:
            raise ValueError(
                f"checkpoint {checkpoint_path} was written by a run with another configuration "
                f"({state.get('config')}); delete it or pass another checkpoint_path"
            )
        missing, unexpected = distiller.load_state_dict(state["distiller"], strict=False)
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {checkpoint_path} does not match this model: missing {missing}, unexpected {unexpected}"
            )
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        start_step = int(state["step"])
        running = {k: list(v) for k, v in state["running_losses"].items()}

    def save(step: int) -> None:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        atomic_torch_save(
            {
                "step": step,
                "config": config_dict,
                "distiller": _trainable_state(distiller),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng,
                "running_losses": running,
            },
            checkpoint_path,
        )

    distiller.train()
    bar = tqdm(total=config.steps, initial=start_step, desc=desc, disable=not progress, leave=False)
    for step, (images, labels) in _batches(dataset, batch_sampler, start_step, config.steps):
        distiller.set_stage(distiller.stage_at(step, config.steps))
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        losses = distiller(images, labels)
        total = sum(losses.values())
        for name, value in losses.items():
            v = value.item()
            if not math.isfinite(v):
                raise NonFiniteLossError(
                    f"loss term {name!r} is {v} at step {step} of {config.steps}; training stopped. "
                    f"Lower the learning rate or check the inputs for NaN/inf."
                )
            running.setdefault(name, []).append(v)
            del running[name][:-window]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
        done = step + 1
        if checkpoint_path is not None and config.checkpoint_every and done % config.checkpoint_every == 0:
            save(done)
        bar.update(1)
        if on_step is not None:
            on_step(done, {name: vals[-1] for name, vals in running.items()})
        if done % 10 == 0 or done == config.steps:
            bar.set_postfix(loss=f"{total.item():.4f}")
    bar.close()
    if checkpoint_path is not None and start_step < config.steps:
        save(config.steps)

    distiller.eval()
    metrics = evaluate() if evaluate is not None else {}
    return TrainResult(
        steps=config.steps,
        resumed_from=start_step,
        losses={k: sum(v) / len(v) for k, v in running.items()},
        metrics=metrics,
    )
