"""Whether a training run had converged, from its evaluations along training.

The criterion the pages state: a run has converged when its metric **rose by at most
0.5 points over the last fifth of its training** (from its first evaluation at or after
80% of the steps to its last), averaged over the seeds of the same configuration.

Why this form. Consecutive evaluations of one run jitter by half a point to a point on
the stand-in test splits (the model moves between checkpoints even at the final learning
rate), so "the last two evaluations within 0.5 points" would flag flat runs at random;
the rise over a stretch, averaged over seeds (5 or more), has a spread of about 0.3
points, and only a run still climbing fails it. A run that falls at the end (it
overfits) has converged in this sense: more steps would not raise it.

:func:`final_rise` gives a run's rise (the runner puts it in each result row,
:mod:`rkd.runs.rows`); :func:`converged` decides a configuration from its seeds' rises;
:func:`rkd.report.claims` marks the rows, and a comparison with an unconverged side gets
no verdict (:mod:`rkd.report.stats`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["final_rise", "converged", "jointly_converged", "TOLERANCE", "LAST_FRACTION"]

#: points: a configuration whose mean rise over the last fifth is above this is still climbing
TOLERANCE = 0.5
#: the last stretch of training the rise is measured over (from 80% of the steps)
LAST_FRACTION = 0.2


def final_rise(points: Sequence[tuple[int, float]], steps: int, fraction: float = LAST_FRACTION) -> float | None:
    """The rise of a run's metric over the last ``fraction`` of its ``steps``: its last
    evaluation minus its first at or after ``(1 - fraction) * steps``; None when the run
    has no evaluation there, or only one (the run cannot be judged: evaluate it more often)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    late = sorted((step, value) for step, value in points if step >= (1 - fraction) * steps)
    if len(late) < 2 or not all(math.isfinite(v) for _, v in late):
        return None
    return float(late[-1][1] - late[0][1])


def converged(rises: Sequence[float | None], tolerance: float = TOLERANCE) -> bool | None:
    """A configuration's verdict from its seeds' rises: converged when their mean is at
    most ``tolerance`` points; None when a seed's run could not be judged."""
    if not rises or any(r is None for r in rises):
        return None
    return sum(rises) / len(rises) <= tolerance


def jointly_converged(*states: bool | None) -> bool | None:
    """The state of a number made from several runs (a gain over a baseline, a head-to-head
    of two models): not converged when one of them is not, converged when all are, None
    (not judged) otherwise."""
    if False in states:
        return False
    return True if all(state is True for state in states) else None
