"""The baselines' settings the pages use (``rkd.experiments.baselines.CHOSEN``) are the
best of their grids on the validation split, as the stored tuning runs
(``results/tuning.jsonl``, written by ``make results``) measured them."""
from __future__ import annotations

from pathlib import Path

from rkd.book.tuning import planned_runs, tuning_rows
from rkd.experiments.baselines import CHOSEN, GRIDS, best_settings, setting_label
from rkd.runs.results import ResultStore

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_chosen_settings_are_the_best_on_validation():
    records = ResultStore(RESULTS).records("tuning")
    assert records, f"{RESULTS / 'tuning.jsonl'} is missing or empty: run `make results` (it tunes the baselines)"
    rows, stale = tuning_rows(records.values(), planned_runs())
    assert stale == 0, "the tuning store has records no planned run produces: run `make results`"
    for task, grid in GRIDS.items():
        for method, settings in grid.items():
            measured = rows[(rows["task"] == task) & (rows["method"] == method)]
            assert set(measured["setting"]) == {setting_label(s) for s in settings}, (task, method)
            assert measured.groupby("setting")["seed"].nunique().min() >= 2, (task, method)
    best = best_settings(rows, {task: "score" for task in GRIDS})
    used = {task: {method: setting_label(setting) for method, setting in methods.items()}
            for task, methods in CHOSEN.items()}
    assert used == best, f"CHOSEN in rkd/experiments/baselines.py is not the best of the grid: use {best}"
