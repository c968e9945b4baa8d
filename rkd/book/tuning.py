"""The Fidelity page's tuning section: the baselines' grids at the stand-in scale, their
validation scores and the point each page uses, from the results store.

``results/tuning.jsonl`` (written by ``python -m rkd.experiments.results refresh
tuning``, one record per job: :mod:`rkd.runs.results`) holds the numbers; which grid
point a record is comes from the tuning experiment's own plan
(:mod:`rkd.experiments.tuning`, its runs' ``task``, ``method`` and ``setting`` labels),
matched on the record's dataset and run name. :func:`tuning_markdown` prints a table per
task: the reference runs (the teacher, the student without distillation), then every
grid point of every baseline with its validation score, the mean over the tuning seeds
and each seed, and which point the pages use
(:data:`rkd.experiments.baselines.CHOSEN`) and which is best
(:func:`rkd.experiments.baselines.best_settings`). Where the two differ the section says
so in a warning: the pages would then use a point their own tuning did not pick.

``python -m rkd.book.tuning results`` prints the section.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rkd.book.markdown import MISSING, code, escape, number, table
from rkd.experiments.baselines import CHOSEN, GRIDS, best_settings, setting_label
from rkd.experiments.recipes import Setting
from rkd.runs.policies import EVALUATION_POLICIES
from rkd.runs.results import ResultStore
from rkd.runs.spec import Run

__all__ = ["TuningError", "STORE_FILE", "planned_runs", "tuning_rows", "missing_markdown", "tuning_markdown"]

#: the tuning's file in the results store
STORE_FILE = "tuning.jsonl"
_EXPERIMENT = "tuning"
_TASKS = {"metric": "Metric learning", "classification": "Classification", "fewshot": "Few-shot learning"}
_SPLITS = {"classes": "the last fifth of the training classes, held out",
           "images": "the last fifth of each training class's images, held out"}


class TuningError(ValueError):
    """A tuning record that cannot be read or placed."""


def planned_runs() -> tuple[Run, ...]:
    """The tuning experiment's runs at ``scale="ci"``, with their labels (no training,
    no data read)."""
    from rkd.experiments import get
    from rkd.runs import resolve_runs

    return resolve_runs(get(_EXPERIMENT), scale="ci").runs


def _metric(run: Run) -> str:
    """The metric a run is judged by: its evaluation's first (the one claims compare)."""
    names = EVALUATION_POLICIES.get(run.evaluation.kind).metrics(run.evaluation)
    if not names:
        raise TuningError(f"{run.name}: its evaluation ({run.evaluation.kind}) reports no metric")
    return names[0]


def _measured(record: Mapping[str, Any], run: Run) -> list[dict[str, Any]]:
    """The result rows of the record's own test set (the validation split)."""
    metrics = record.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise TuningError(f"the record of {record.get('run')!r} (seed {record.get('seed')}) has no metrics")
    values = metrics.get(record["dataset"], next(iter(metrics.values())) if len(metrics) == 1 else None)
    if not isinstance(values, dict):
        raise TuningError(f"the record of {record['run']!r} (seed {record.get('seed')}) has no metrics for "
                          f"{record['dataset']!r} (it has {sorted(metrics)})")
    return EVALUATION_POLICIES.get(run.evaluation.kind).result_rows(run.evaluation, values)


def tuning_rows(records: Iterable[Mapping[str, Any]], runs: Sequence[Run]) -> tuple[pd.DataFrame, int]:
    """One row per record of a labelled run and per result row (task, method, setting,
    role, seed, metric, score), and how many records no planned run has (stale)."""
    by_name = {(run.data.display, run.name): run for run in runs}
    rows, stale = [], 0
    for record in records:
        try:
            run = by_name.get((record["dataset"], record["run"]))
            seed = int(record["seed"])
        except (KeyError, TypeError, ValueError) as error:
            raise TuningError(f"a tuning record lacks its dataset, run or seed ({error!r}): {sorted(record)}") from None
        if run is None:
            stale += 1
            continue
        labels = dict(run.labels)
        if "task" not in labels:
            continue  # a pretrained trunk: not judged on the validation split
        metric = _metric(run)
        for measured in _measured(record, run):
            if metric not in measured:
                raise TuningError(f"the record of {record['run']!r} (seed {seed}) has no {metric!r}")
            rows.append({"task": labels["task"], "method": labels["method"], "setting": labels["setting"],
                         "role": run.role, "seed": seed, "metric": metric, "score": float(measured[metric])})
    columns = ["task", "method", "setting", "role", "seed", "metric", "score"]
    return pd.DataFrame(rows, columns=columns), stale


def missing_markdown(path: str) -> str:
    """What the section says when the store holds no tuning results."""
    return (f"```{{warning}}\nNo tuning results: {code(path)} is missing, so this section cannot show the grid's "
            f"scores. `python -m rkd.experiments.results refresh tuning` trains every grid point and writes it.\n```\n")


def _describe(task: str, runs: Sequence[Run]) -> str:
    """The task's validation split and metric, in words, from its runs."""
    run = next(run for run in runs if dict(run.labels).get("task") == task)
    split = _SPLITS.get(run.data.validation or "", "a validation split carved from the training split")
    kind = run.evaluation.kind
    metric = {"recall": f"Recall@{run.evaluation.ks[0]}" if getattr(run.evaluation, "ks", None) else "Recall@K",
              "top1": "top-1 accuracy",
              "episodes": f"{'/'.join(map(str, run.evaluation.ways))}-way {run.evaluation.shot}-shot accuracy"
              }.get(kind, _metric(run))
    return f"The data: {escape(run.data.display)}; the validation split: {split}; the score: {metric} (%) on it"


def _cells(part: pd.DataFrame, seeds: list[int]) -> list[str]:
    """The mean over the seeds, then each seed's score (a seed's mean over its result rows)."""
    if part.empty:
        return ["not in the store"] + [MISSING] * len(seeds)
    per_seed = part.groupby("seed")["score"].mean()
    mean = float(part["score"].mean())
    return [number(mean)] + [number(per_seed.get(seed, math.nan)) for seed in seeds]


def _task_section(task: str, rows: pd.DataFrame, runs: Sequence[Run], seeds: list[int],
                  chosen: Mapping[str, Setting], best: Mapping[str, str], heading: str) -> list[str]:
    part = rows[rows["task"] == task]
    grid = GRIDS.get(task, {})
    lines = [f"{heading} {_TASKS.get(task, escape(task))}", "", f"{_describe(task, runs)}.", ""]
    body = []
    labelled = [dict(run.labels) for run in runs if dict(run.labels).get("task") == task]
    references = list(dict.fromkeys(labels["method"] for labels in labelled if labels["method"] not in grid))
    roles = {dict(run.labels)["method"]: run.role for run in runs if dict(run.labels).get("task") == task}
    for method in references:
        role = "the teacher" if roles.get(method) == "teacher" else "no distillation"
        body.append([escape(method), MISSING, *_cells(part[part["method"] == method], seeds), f"reference: {role}"])
    mismatches = []
    for method, settings in grid.items():
        used = setting_label(chosen[method]) if method in chosen else None
        scored = not part[part["method"] == method].empty
        for setting in settings:
            name = setting_label(setting)
            scores = part[(part["method"] == method) & (part["setting"] == name)]
            marks = [word for word, flag in (("used", name == used), ("best", scored and name == best.get(method)))
                     if flag]
            body.append([escape(method), escape(name), *_cells(scores, seeds), ", ".join(marks)])
        if scored and used != best.get(method):
            mismatches.append((method, used, best.get(method)))
    header = ["run", "grid point", "mean", *[f"seed {seed}" for seed in seeds], "on the pages"]
    lines += [table(header, body, ["l", "l", "r", *["r"] * len(seeds), "l"]), ""]
    for method, used, found in mismatches:
        lines += [f"```{{warning}}\n{_TASKS.get(task, task)}, {escape(method)}: the pages use "
                  f"{escape(used or 'no grid point')}, but the best mean validation score is {escape(found)}'s. "
                  f"`CHOSEN` in `rkd/experiments/baselines.py` must name the best point of the grid.\n```", ""]
    return lines


def tuning_markdown(folder: Path, *, runs: Sequence[Run] | None = None, chosen: Mapping[str, Mapping] | None = None,
                    heading_level: int = 3) -> str:
    """The tuning section for the results store in ``folder`` (a warning admonition when
    it holds no tuning file). ``runs``: the tuning's planned runs (default
    :func:`planned_runs`); ``chosen``: task -> baseline -> the setting the pages use
    (default :data:`~rkd.experiments.baselines.CHOSEN`)."""
    path = Path(folder) / STORE_FILE
    if not path.is_file():
        return missing_markdown(f"results/{STORE_FILE}")
    try:
        records = list(ResultStore(folder).records(_EXPERIMENT).values())
    except (ValueError, KeyError) as error:
        raise TuningError(f"{path}: {error}") from error
    runs = planned_runs() if runs is None else runs
    chosen = CHOSEN if chosen is None else chosen
    rows, stale = tuning_rows(records, runs)
    seeds = sorted(rows["seed"].unique().tolist())
    best = best_settings(rows, {task: "score" for task in GRIDS})
    trained = len({(record.get("dataset"), record.get("run")) for record in records})
    lines = [f"From {code(f'results/{STORE_FILE}')}: {len(records):,} records of {trained:,} runs, seeds "
             f"{', '.join(map(str, seeds)) or MISSING}. The mean is over the seeds; \"used\" marks the point the "
             f"pages train with, \"best\" the one with the highest mean (ties: the paper's, listed first).", ""]
    if stale:
        lines += [f"{stale:,} record(s) of the file match no planned run (the plan changed since it was written: "
                  f"`python -m rkd.experiments.results refresh tuning` rewrites it); they are not shown.", ""]
    tasks = list(dict.fromkeys(dict(run.labels)["task"] for run in runs if "task" in dict(run.labels)))
    for task in tasks:
        lines += _task_section(task, rows, runs, seeds, chosen.get(task, {}), best.get(task, {}),
                               "#" * heading_level)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the Fidelity page's tuning section.")
    parser.add_argument("folder", type=Path, nargs="?", default=Path("results"), help="the results store")
    args = parser.parse_args(argv)
    print(tuning_markdown(args.folder), end="")


if __name__ == "__main__":
    main()
