"""A synthetic ``results/tuning.jsonl``: a record for every planned tuning run and seed,
made by the runner's own record format (:meth:`rkd.runs.training.TrainedRun.record`)
and written by the results store's own writer (:class:`rkd.runs.results.ResultStore`),
with validation scores a test chooses."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from rkd.book.tuning import planned_runs
from rkd.runs.jobs import Job
from rkd.runs.results import ResultStore
from rkd.runs.spec import Run
from rkd.runs.training import TrainedRun

#: (run, seed) -> the run's validation score (%)
Score = Callable[[Run, int], float]


def default_score(run: Run, seed: int) -> float:
    """The first grid point (the paper's) best, by a margin, then the others in grid order."""
    name = run.name.split(" (")[0]
    index = int(name.rsplit(" ", 1)[1]) if name.rsplit(" ", 1)[-1].isdigit() else 0
    return 60.0 - 5.0 * index + 0.5 * seed


def _metrics(run: Run, value: float) -> tuple[dict, dict]:
    """(metrics, episodes) as the run's evaluation records them."""
    evaluation = run.evaluation
    if evaluation.kind == "recall":
        values = {f"recall_at_{k}": min(100.0, value + k - 1) for k in evaluation.ks}
        return {run.data.display: values}, {}
    if evaluation.kind == "episodes":
        ways = {f"{way}-way": {"accuracy": value, "ci95": 1.5} for way in evaluation.ways}
        return {run.data.display: ways}, {run.data.display: {way: [value] * 3 for way in ways}}
    return {run.data.display: {"top1": value}}, {}


def tuning_records(score: Score = default_score, runs: Sequence[Run] | None = None) -> list[dict]:
    """A record per planned tuning run (pretrained trunks included) and tuning seed."""
    runs = planned_runs() if runs is None else runs
    records = []
    for run in runs:
        for seed in (0, 1):
            key = hashlib.sha256(f"{run.data.display}|{run.name}|{seed}".encode()).hexdigest()
            metrics, episodes = _metrics(run, score(run, seed))
            trained = TrainedRun(Job(run, seed, {}, key=key), metrics=metrics, episodes=episodes,
                                 history=[{"step": 100, **next(iter(metrics.values()))}], steps=100,
                                 wall_seconds=1.0, machine="Test CPU", date="2026-12-06")
            records.append(trained.record("tuning"))
    return records


def write_tuning_store(folder: Path, score: Score = default_score, runs: Sequence[Run] | None = None) -> Path:
    """``folder/tuning.jsonl`` with :func:`tuning_records`; returns its path."""
    return ResultStore(folder).write("tuning", tuning_records(score, runs))
