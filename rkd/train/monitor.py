"""What the host does around the training steps, apart from the arithmetic: the
:class:`StepMonitor` reads the loss terms (through the NaN/inf guard, at the steps it
is due), keeps their running means, writes the training log and shows progress; the
:class:`PeriodicEvaluation` evaluates every ``eval_every`` steps without changing the
run's result. :func:`rkd.train.fit` calls both, step after step.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..progress import progress_bar
from .checkpoint import plain, rng_state, set_rng_state
from .guard import NonFiniteGuard
from .log import TrainingLog

__all__ = ["StepMonitor", "PeriodicEvaluation"]


class StepMonitor:
    """The loss terms of every step as the host sees them.

    ``running``: term -> its values over the last ``window`` steps (the epoch-sized window
    :class:`~rkd.train.TrainResult` averages). Each :meth:`read` flushes the guard's
    pending records (raising for a non-finite one), appends them to ``running`` and the
    log; :meth:`report` then calls ``on_step`` and moves the progress bar.
    """

    def __init__(self, guard: NonFiniteGuard, *, running: dict[str, list[float]], window: int,
                 log: TrainingLog | None, on_step: Callable[[int, dict[str, float]], None] | None,
                 steps: int, start_step: int, desc: str, show: bool):
        self.guard, self.running, self.window, self.log, self.on_step = guard, running, window, log, on_step
        self.steps = steps
        self.bar = progress_bar(steps, initial=start_step, desc=desc, enabled=show)
        self._read: list[tuple[int, dict[str, float], dict[str, float]]] = []

    def read(self, step: int, *, force: bool) -> None:
        """After the forward pass of ``step`` (0-based), before its update: read the pending
        loss values when the guard's cadence or ``force`` (a checkpoint, an evaluation, the
        last step) asks for it."""
        done = step + 1
        if not (force or self.guard.due(done) or done == self.steps):
            return
        for read_step, values in self.guard.flush(step):  # raises before this step's update
            for name, value in values.items():
                self.running.setdefault(name, []).append(value)
                del self.running[name][:-self.window]
            latest = {name: vals[-1] for name, vals in self.running.items()}
            self._read.append((read_step + 1, latest, values))
            if self.log is not None:
                self.log.add_losses(read_step + 1, values)

    def report(self) -> None:
        """After the step's update (and checkpoint): ``on_step`` for every step read, and the bar."""
        self.bar.update(1)
        for done, latest, values in self._read:
            if self.on_step is not None:
                self.on_step(done, latest)
            if done % 10 == 0 or done == self.steps:
                self.bar.set_postfix(loss=f"{sum(values.values()):.4f}")
        self._read.clear()

    def mean_losses(self) -> dict[str, float]:
        return {k: sum(v) / len(v) for k, v in self.running.items()}

    def close(self) -> None:
        self.bar.close()
        self.guard.close()


class PeriodicEvaluation:
    """``evaluate()`` every ``every`` steps (``every`` 0: never) and after the last one,
    each result appended to ``history`` as ``{"step": s, **metrics}`` and to the log."""

    def __init__(self, evaluate: Callable[[], dict[str, Any]] | None, every: int, *, steps: int,
                 history: list[dict[str, Any]], log: TrainingLog | None):
        self.check_every(every)
        self.evaluate, self.every, self.steps, self.history, self.log = evaluate, every, steps, history, log

    @staticmethod
    def check_every(every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"eval_every must be an int >= 0 (0: evaluate only after the last step), got {every!r}")

    def due(self, done: int) -> bool:
        """Whether a periodic evaluation follows step ``done`` (1-based; never the last one)."""
        return self.evaluate is not None and bool(self.every) and done % self.every == 0 and done < self.steps

    def periodic(self, done: int, distiller: nn.Module) -> None:
        """Evaluate with every global random state put back afterwards and the distiller
        back in training mode: a periodic evaluation leaves the run's result as it was."""
        saved = rng_state()
        try:
            metrics = {str(k): plain(v) for k, v in dict(self.evaluate()).items()}
        finally:
            set_rng_state(saved)
            distiller.train()
        self.history.append({"step": done, **metrics})
        if self.log is not None:
            self.log.add_eval(done, metrics)

    def final(self, distiller: nn.Module) -> dict[str, Any]:
        """The last step's model evaluated (its result is the run's ``metrics``)."""
        distiller.eval()
        if self.evaluate is None:
            return {}
        metrics = self.evaluate()
        self.history[:] = [h for h in self.history if h.get("step") != self.steps] + [
            {"step": self.steps, **plain(metrics)}]
        if self.log is not None:
            self.log.add_eval(self.steps, metrics)
        return metrics
