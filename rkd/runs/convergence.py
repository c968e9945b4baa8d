"""Whether a training run converged, from its evaluation history: the criterion the
pages state ("the last two evaluations lie within 0.5 points"), parameterised. The
runner marks each result row with it (:mod:`rkd.runs.rows`); a comparison with an
unconverged side gets no verdict (:mod:`rkd.report.stats`)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Convergence", "check_convergence"]


@dataclass(frozen=True)
class Convergence:
    """Whether a run converged: its last ``window`` evaluations lie within ``tolerance``
    points of each other. True in a boolean context when it did."""

    converged: bool
    spread: float  # max - min of the last evaluations (nan when too few)
    evaluations: int
    reason: str

    def __bool__(self) -> bool:
        return self.converged


def check_convergence(history: Sequence[Any], *, tolerance: float = 0.5, window: int = 2,
                      metric: str | None = None) -> Convergence:
    """Judge a run's evaluation history, ``[(step, value), ...]`` or the training loop's
    ``[{"step": s, metric: value, ...}, ...]`` (then name ``metric``; entries without it
    are skipped): converged when the last ``window`` evaluations by step lie within
    ``tolerance`` points (max - min)."""
    if window < 2 or tolerance < 0:
        raise ValueError(f"window must be >= 2 and tolerance >= 0, got window={window}, tolerance={tolerance}")
    points = []
    for entry in history:
        if isinstance(entry, Mapping):
            if metric is None:
                raise ValueError("a history of dicts needs metric=... to say which value to read")
            if metric in entry:
                points.append((entry["step"], float(entry[metric])))
        else:
            step, value = entry
            points.append((step, float(value)))
    points.sort(key=lambda point: point[0])
    if len(points) < window:
        return Convergence(False, math.nan, len(points),
                           f"{len(points)} evaluation{'s' * (len(points) != 1)}; the criterion needs {window}")
    last = [value for _, value in points[-window:]]
    if not all(math.isfinite(v) for v in last):
        return Convergence(False, math.nan, len(points), "a recent evaluation is not a finite number")
    spread = max(last) - min(last)
    ok = spread <= tolerance
    return Convergence(ok, spread, len(points), f"the last {window} evaluations lie within {spread:.2f} points "
                                                f"({'within' if ok else 'more than'} the tolerance {tolerance:g})")
