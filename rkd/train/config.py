"""What a training run is asked to do (:class:`TrainConfig`), what it gives back
(:class:`TrainResult`), and the optimisers it can use (:data:`OPTIMIZERS`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..registry import Registry

__all__ = ["TrainConfig", "TrainResult", "OPTIMIZERS"]

#: name -> factory ``(parameters, config) -> torch.optim.Optimizer``; ``TrainConfig.optimizer``
#: names one ("adam" or "sgd"), built with the config's learning rate and weight decay
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
# fused: one kernel per step, and on the CPU the exact hardware square root; the default
# (foreach) update takes MKL's vector square root, whose last bits depend on the
# processor (see rkd.portable)
OPTIMIZERS.register(
    "adam", lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
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
    """What :func:`rkd.train.fit` returns.

    ``losses``: the mean of each weighted loss term over the last epoch-sized window.
    ``metrics``: ``evaluate()`` after the last step: the reported model is always the last step's.
    ``history``: every evaluation of the run, in order, as ``{"step": s, **metrics}``
    (the periodic ones of ``eval_every`` and the final one); runs before a resume included.
    """

    steps: int
    resumed_from: int
    losses: dict[str, float]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
