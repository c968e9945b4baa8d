"""Trained runs as the tidy rows pages read: one row per (run, seed, evaluated test set[,
way]), with the run's labels as the table's own columns, and few-shot's per-episode
accuracies as rows of their own (the pairs a claim compares episode by episode)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from .convergence import final_rise
from .plan import Resolved
from .policies import EVALUATION_POLICIES
from .training import TrainedRun

__all__ = ["result_rows", "episode_rows", "tidy", "best_on_test", "rise"]


def best_on_test(trained: TrainedRun) -> dict[str, Any]:
    """The highest test metric of the periodic evaluations and its step: the model the
    authors' code would have kept. A column beside ours, never used for our verdicts."""
    evaluation = trained.job.run.evaluation
    metrics = EVALUATION_POLICIES.get(evaluation.kind).metrics(evaluation)
    if not trained.history or not metrics:
        return {}
    scored = [h for h in trained.history if metrics[0] in h]
    if not scored:
        return {}
    best = max(scored, key=lambda h: h[metrics[0]])
    return {f"best_{metrics[0]}": best[metrics[0]], "best_step": best.get("step")}


def result_rows(trained: TrainedRun, resolved: Resolved) -> list[dict[str, Any]]:
    """The result rows of one trained run and seed: one per evaluated test set and per row
    its evaluation policy measures there (a way, in few-shot learning), with the run's
    names and labels, the seed, the metrics, the best periodic evaluation (on the run's
    own test set), the final rise, whether the run trains, and the ``resolved`` scale and
    protocol."""
    run = trained.job.run
    base = {"dataset": run.data.display, "run": run.name, "role": run.role, "network": run.network.name,
            "method": run.method or "—", **dict(run.labels), "seed": trained.job.seed}
    policy = EVALUATION_POLICIES.get(run.evaluation.kind)
    tail = {"scale": resolved.label, "protocol": resolved.protocol}
    best = best_on_test(trained)
    rows = []
    for domain, values in trained.metrics.items():
        row = {**base, **({"evaluated_on": domain} if run.evaluation.domains else {})}
        extra = best if domain == run.data.display and not policy.per_episode else {}
        for measured in policy.result_rows(run.evaluation, values):
            rows.append({**row, **measured, **extra, "final_rise": rise(trained, measured), "trains": run.trains,
                         **tail})
    return rows


def rise(trained: TrainedRun, row: dict[str, Any]) -> float | None:
    """How much the metric of ``row`` rose over the last fifth of the run's training
    (:func:`rkd.runs.convergence.final_rise`); None for a run only evaluated, or one
    without evaluations in that stretch."""
    run = trained.job.run
    if not run.trains:
        return None
    points = EVALUATION_POLICIES.get(run.evaluation.kind).curve(run.evaluation, trained.history, row)
    return final_rise(points, run.train.steps)


def episode_rows(trained: TrainedRun) -> list[dict[str, Any]]:
    """One row per few-shot test episode of a trained run and seed (dataset, run, seed,
    way, shot, episode index, accuracy): the pairs claims compare episode by episode.
    Empty for a run without per-episode evaluations."""
    run = trained.job.run
    return [{"dataset": domain, "run": run.name, "seed": trained.job.seed, "way": int(way.split("-")[0]),
             "shot": run.evaluation.shot, "episode": index, "accuracy": value}
            for domain, by_way in trained.episodes.items() for way, values in by_way.items()
            for index, value in enumerate(values)]


def tidy(rows: pd.DataFrame, integer_labels: set[str]) -> pd.DataFrame:
    """``rows`` without the columns only other roles fill, and with integer labels
    (embedding size, generation, ...) as ints again where rows of those roles, lacking
    them, had made the column float."""
    rows = rows.dropna(axis=1, how="all").reset_index(drop=True)
    for column in integer_labels & set(rows.columns):
        values = rows[column]
        if values.dtype.kind == "f" and values.notna().all() and (values == values.round()).all():
            rows[column] = values.astype("int64")
    return rows
