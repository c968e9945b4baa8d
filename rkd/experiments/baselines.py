"""The baselines' settings at the stand-in scale: the grid of each baseline's weights (and
DarkRank's alpha and beta) that :mod:`rkd.experiments.tuning` trains on a validation split
carved from the training classes, and the setting each page uses (:data:`CHOSEN`, the
best of its grid; a test holds it to the stored tuning results)."""
from __future__ import annotations

import pandas as pd

from .recipes import Setting

__all__ = ["GRIDS", "CHOSEN", "setting_label", "best_settings"]

#: task -> baseline -> its grid (the paper's setting first)
GRIDS: dict[str, dict[str, tuple[Setting, ...]]] = {
    "metric": {
        "Attention": tuple(Setting(weights={"attention": w}) for w in (50.0, 5.0, 500.0)),
        "DarkRank": tuple(Setting(options={"darkrank": {"alpha": a, "beta": b}})
                          for a, b in ((3.0, 3.0), (1.0, 3.0), (3.0, 2.0), (10.0, 3.0))),
        "RRD": tuple(Setting(weights={"rrd": w}) for w in (1.0, 0.1, 10.0)),
    },
    "classification": {
        "Attention": tuple(Setting(weights={"attention": w}) for w in (50.0, 5.0, 0.5)),
        "RRD": tuple(Setting(weights={"rrd": w}) for w in (1.0, 0.1, 10.0)),
    },
    "fewshot": {
        "Attention": tuple(Setting(weights={"attention": w}, options={"attention": {"blocks": ("block2", "block3")}})
                           for w in (10.0, 1.0, 100.0)),
    },
}

#: task -> baseline -> the setting the pages use at ``scale="ci"`` (the best of its grid)
CHOSEN: dict[str, dict[str, Setting]] = {
    "metric": {"Attention": GRIDS["metric"]["Attention"][1], "DarkRank": GRIDS["metric"]["DarkRank"][3],
               "RRD": GRIDS["metric"]["RRD"][1]},
    "classification": {"Attention": GRIDS["classification"]["Attention"][2],
                       "RRD": GRIDS["classification"]["RRD"][0]},
    "fewshot": {"Attention": GRIDS["fewshot"]["Attention"][1]},
}


def setting_label(setting: Setting) -> str:
    """A grid point in words: ``attention x5``, ``darkrank alpha=1 beta=3``."""
    parts = [f"{term} x{weight:g}" for term, weight in setting.weights.items()]
    parts += [f"{term} " + " ".join(f"{k}={v:g}" for k, v in options.items() if isinstance(v, float))
              for term, options in setting.options.items() if any(isinstance(v, float) for v in options.values())]
    return ", ".join(parts) or "the paper's"


def best_settings(rows: pd.DataFrame, metric_of: dict[str, str]) -> dict[str, dict[str, str]]:
    """Task -> baseline -> the label of its grid point with the best mean validation score
    over the seeds (ties: the first, the paper's); ``metric_of``: task -> metric column."""
    chosen: dict[str, dict[str, str]] = {}
    for task, grid in GRIDS.items():
        part = rows[rows["task"] == task]
        for method, settings in grid.items():
            means = part[part["method"] == method].groupby("setting", sort=False)[metric_of[task]].mean()
            order = [setting_label(s) for s in settings]
            best = max(order, key=lambda label: (means.get(label, float("-inf")), -order.index(label)))
            chosen.setdefault(task, {})[method] = best
    return chosen
