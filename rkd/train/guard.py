"""The non-finite guard: NaN or inf in a batch, in the student's outputs or in a loss
term stops training, naming the step, before a checkpoint can hold the damage.

Every step records, on the device and without waiting for it, its loss values and
finite-ness flags of the input batch and of the student's ``"embedding"`` /
``"logits"`` outputs (taken by a forward hook as they are produced, so a diverged
student is reported as such even when a loss fails on its NaN first). The host reads
them in one copy every ``check_every`` steps, before that step's optimiser update, and
always before a checkpoint, an evaluation and the last step:

- ``check_every=1`` (the CPU default): a non-finite value stops training before the
  optimiser uses it;
- ``check_every=k`` (the CUDA default is 10): the GPU never waits for the host in
  between; a non-finite value found at the check is reported with its own step, and the
  message says exactly which updates the optimiser already applied with it. No
  checkpoint is ever written after a non-finite step.

Under data parallelism (``parallel``, see :mod:`rkd.train.distributed`) each check reads
the records of every process in one collective: every process raises the same error at
the same step (a NaN in one process's shard of the input stops them all), and processes
whose loss values disagree (they compute the loss of the same gathered batch, so they
must agree up to rounding) stop the run with :class:`ProcessesDisagreeError`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["NonFiniteLossError", "NonFiniteGuard", "ProcessesDisagreeError", "all_finite"]

# two processes' values of a loss term agree when they differ by no more than this
# (relative, plus an absolute floor for losses near zero): far above float rounding,
# far below what another batch or another random draw gives
AGREEMENT_RTOL, AGREEMENT_ATOL = 1e-3, 1e-6


def all_finite(tensor: torch.Tensor) -> torch.Tensor:
    """``torch.isfinite(tensor).all()`` (a bool tensor on ``tensor``'s device), several times
    faster on the CPU: ``x * 0`` is exactly zero for a finite ``x`` and NaN for inf or NaN,
    so the sum of ``tensor * 0`` is finite exactly when every value is (it cannot overflow)."""
    return torch.isfinite((tensor * 0).sum())


class NonFiniteLossError(FloatingPointError):
    """NaN or inf in a training step: in the input batch, in the student's outputs or in a
    loss term. Training stops at that step, before the optimiser uses the values (or, when
    checks run every k steps, the message says which updates were applied); the message
    gives the step number (1-based, as ``on_step`` counts)."""


class ProcessesDisagreeError(RuntimeError):
    """The processes of a data-parallel run computed different loss values for one step:
    they no longer train on the same global batch, so the gradient is not the
    single-process one."""


class NonFiniteGuard:
    """Per-step finite-ness records, read by the host every ``check_every`` steps."""

    OUTPUT_KEYS = ("embedding", "logits")

    def __init__(self, student: nn.Module | None, *, total_steps: int, desc: str, lr: float,
                 check_every: int, resume_hint: Callable[[], str], parallel=None):
        self.total_steps, self.desc, self.lr = total_steps, desc, lr
        self.parallel = parallel
        self.check_every = check_every
        self.resume_hint = resume_hint
        self._outputs_ok: dict[str, torch.Tensor] = {}
        # (step, loss names, output keys, values on the device)
        self._pending: list[tuple[int, list[str], list[str], torch.Tensor]] = []
        self._hook = student.register_forward_hook(self._check_outputs) if isinstance(student, nn.Module) else None

    def _check_outputs(self, module, _inputs, outputs) -> None:
        if isinstance(outputs, dict):
            for key in self.OUTPUT_KEYS:
                value = outputs.get(key)
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    self._outputs_ok[key] = all_finite(value.detach())

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()

    # ------------------------------------------------------------------ recording

    def begin_step(self, images: torch.Tensor) -> torch.Tensor:
        """Forget the previous step's output flags; return this batch's flag (on the device)."""
        self._outputs_ok.clear()
        if images.is_floating_point():
            return all_finite(images)
        return torch.ones((), dtype=torch.bool, device=images.device)

    def record(self, step: int, losses: dict[str, torch.Tensor], input_ok: torch.Tensor) -> None:
        names, keys = list(losses), list(self._outputs_ok)
        values = torch.stack([
            *(losses[name].detach().to(torch.float64) for name in names),
            input_ok.to(device=input_ok.device, dtype=torch.float64),
            *(self._outputs_ok[key].to(device=input_ok.device, dtype=torch.float64) for key in keys),
        ])
        self._pending.append((step, names, keys, values))

    def due(self, steps_done: int) -> bool:
        return steps_done % self.check_every == 0

    # ------------------------------------------------------------------ checking

    def flush(self, current_step: int, *, collective: bool = True) -> list[tuple[int, dict[str, float]]]:
        """Read every pending record in one device-to-host copy; raise
        :class:`NonFiniteLossError` for the first non-finite one; else return
        ``[(step, {term: value})]`` in step order. ``current_step`` is the step whose
        update has not been applied yet (the earlier pending ones have been).
        Data-parallel, every process's records are read (one all-gather, which every
        process must call at the same step) unless ``collective`` is False."""
        if not self._pending:
            return []
        pending, self._pending = self._pending, []
        local = torch.cat([values for *_, values in pending])
        parallel = self.parallel if collective else None
        everyone = parallel.stack(local).tolist() if parallel is not None else [local.tolist()]
        own_rank = parallel.rank if parallel is not None else 0
        results, offset = [], 0
        for step, names, keys, _ in pending:
            width = len(names) + 1 + len(keys)
            rows = [row[offset: offset + width] for row in everyone]
            offset += width
            for rank, row in enumerate(rows):  # in rank order: every process raises the same error
                where = f" (in process {rank} of {len(rows)})" if parallel is not None else ""
                problem = self._first_problem(step, bool(row[len(names)]),
                                              {k: bool(v) for k, v in zip(keys, row[len(names) + 1:])},
                                              dict(zip(names, row[: len(names)])), current_step=current_step,
                                              where=where)
                if problem is not None:
                    raise problem
            if parallel is not None:
                self._check_agreement(step, names, rows)
            results.append((step, dict(zip(names, rows[own_rank][: len(names)]))))
        return results

    def _check_agreement(self, step: int, names: list[str], rows: list[list[float]]) -> None:
        for index, name in enumerate(names):
            values = [row[index] for row in rows]
            low, high = min(values), max(values)
            if high - low > AGREEMENT_RTOL * max(abs(low), abs(high)) + AGREEMENT_ATOL:
                listed = ", ".join(f"process {rank}: {value!r}" for rank, value in enumerate(values))
                raise ProcessesDisagreeError(
                    f"loss term {name!r} differs between the processes at step {step + 1} of {self.total_steps} "
                    f"({self.desc}): {listed}. They compute it on the same gathered batch, so they should agree "
                    f"up to rounding: they no longer see the same batch, or a term drew other random numbers in "
                    f"each process (the processes share rank 0's random state at the start and must then draw "
                    f"alike). This is a bug; please report it with the method and the command."
                    f"{self.resume_hint()}")

    def explain(self, step: int, input_ok: torch.Tensor) -> NonFiniteLossError | None:
        """For an exception raised in the forward pass of ``step``: the non-finite value
        that caused it, if any (an earlier unchecked step first)."""
        # raises for an earlier step's NaN, the real cause; this process's records only:
        # the others may not be here (they are stopped when this one exits)
        self.flush(step, collective=False)
        return self._first_problem(step, bool(input_ok), {k: bool(v) for k, v in self._outputs_ok.items()}, {},
                                   current_step=step)

    def _first_problem(self, step: int, input_ok: bool, outputs_ok: dict[str, bool], losses: dict[str, float],
                       current_step: int, where: str = "") -> NonFiniteLossError | None:
        if not input_ok:
            return self._error(step, current_step, f"the input batch{where} holds NaN or inf values",
                               "Check the dataset and its transform (a division by a zero standard deviation?).")
        for key, ok in outputs_ok.items():
            if not ok:
                return self._error(
                    step, current_step, f"the student's {key!r} output is NaN or inf",
                    f"The weights have probably diverged: lower the learning rate (lr={self.lr:g}) or check "
                    f"the loss weights.")
        for name, value in losses.items():
            if not math.isfinite(value):
                return self._error(
                    step, current_step, f"loss term {name!r} is {value}",
                    f"Lower the learning rate (lr={self.lr:g}) or check the inputs and the loss weights.")
        return None

    def _error(self, step: int, current_step: int, what: str, advice: str) -> NonFiniteLossError:
        # steps are 0-based here and 1-based in the message
        if current_step == step:
            stopped = "training stopped before the optimiser used it."
        else:
            stopped = (f"it was found by the check of step {current_step + 1} (check_every={self.check_every}), "
                       f"so the optimiser had already applied the updates of steps {step + 1} to {current_step} "
                       f"with it: the weights in memory are not usable (check_every=1 stops before the update).")
        return NonFiniteLossError(
            f"{what} at step {step + 1} of {self.total_steps} ({self.desc}); {stopped} {advice}"
            f"{self.resume_hint()}"
        )
