"""Claims judged with statistics: paired differences over seeds (and over test
episodes in few-shot), their 95% t-intervals, and a verdict.

A claim of the paper ("RKD-DA beats the Triplet student at every size") is a list of
:class:`Comparison` s, each "``better`` beats ``worse``" on one metric. Both sides are
selected by the same key columns on the paper's numbers and on ours, so one claim is
checked on the paper's table and on our results at any scale. On ours, every seed
trains both sides on the same data from the same initial draw, so the per-seed
differences are paired; the verdict is

- **holds** when the 95% t-interval of the mean difference lies above 0,
- **reversed** when it lies below 0,
- **not distinguishable at this scale** otherwise (also with a single seed).

Few-shot models of one seed are tested on the same episodes, so there the difference
is also paired over episodes, and both intervals must agree for a verdict.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

__all__ = ["Interval", "t_interval", "Comparison", "Claim", "judge", "summarize_verdicts", "VERDICTS"]

HOLDS, REVERSED, UNCLEAR = "holds", "reversed", "not distinguishable at this scale"
VERDICTS = (HOLDS, REVERSED, UNCLEAR)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` paired differences and its two-sided t-interval."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return HOLDS
        if self.high < 0:
            return REVERSED
        return UNCLEAR

    def __str__(self) -> str:
        if not math.isfinite(self.low):
            return f"{self.mean:+.2f} (n={self.n}: no interval)"
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def t_interval(differences: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The ``confidence`` t-interval of the mean of ``differences`` (n - 1 degrees of
    freedom). With fewer than two values there is no interval (-inf, inf)."""
    values = np.asarray(list(differences), dtype=np.float64)
    if values.size == 0:
        raise ValueError("t_interval needs at least one difference")
    mean = float(values.mean())
    if values.size < 2:
        return Interval(mean, -math.inf, math.inf, int(values.size))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return Interval(mean, mean - half, mean + half, int(values.size))


@dataclass(frozen=True)
class Comparison:
    """"``better`` beats ``worse``": each side selects one model by key columns
    (e.g. ``{"method": "RKD-DA", "embedding_dim": 16, "l2_normalize": "no"}``)."""

    better: Mapping[str, Any]
    worse: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{_describe(self.better)} > {_describe(self.worse)}"


def _describe(selector: Mapping[str, Any]) -> str:
    parts = []
    for key, value in selector.items():
        if key == "l2_normalize":
            parts.append("no L2" if value == "no" else "L2")
        elif key == "embedding_dim":
            parts.append(f"d={value}")
        elif key in ("way", "shot"):
            parts.append(f"{value}-{key}")
        elif key == "generation":
            parts.append(f"generation {value}")
        else:
            parts.append(str(value))
    return " ".join(parts)


#: how the claims of the RRD paper (that RRD beats RKD), judged beside the RKD paper's,
#: begin: the book's RRD page collects them from every page by this prefix
RRD_CLAIM = "RRD's claim: "


@dataclass(frozen=True)
class Claim:
    """A sentence of the paper and the comparisons that check it."""

    text: str
    comparisons: tuple[Comparison, ...]


def _select(frame: pd.DataFrame, selector: Mapping[str, Any]) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for key, value in selector.items():
        if key not in frame.columns:
            return frame.iloc[0:0]
        mask &= frame[key] == value
    return frame[mask]


def judge(claims: Sequence[Claim], rows: pd.DataFrame, metric: str, *, paper: pd.DataFrame | None = None,
          episodes: pd.DataFrame | None = None, stands_in_for: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (claim, comparison, dataset of ours): the paper's verdict on its
    numbers, our mean paired difference with its interval, and our verdict.

    ``rows``: our per-seed results (columns ``dataset``, ``seed``, ``metric`` and the
    selectors' keys). ``paper``: the paper's numbers in the same long form (``dataset``
    its own, ``value``). ``stands_in_for``: our dataset -> the paper's dataset whose
    role it plays. ``episodes``: few-shot per-episode accuracies (``run`` ... ``episode``,
    ``accuracy``), for the episode-paired interval.
    """
    stands_in_for = dict(stands_in_for or {})
    out = []
    for claim in claims:
        for comparison in claim.comparisons:
            for dataset, ours in rows.groupby("dataset", sort=False):
                better, worse = _select(ours, comparison.better), _select(ours, comparison.worse)
                if better.empty or worse.empty:
                    continue
                paired = better[["seed", metric]].merge(worse[["seed", metric]], on="seed", suffixes=("_b", "_w"))
                if paired["seed"].duplicated().any():
                    raise ValueError(f"claim {claim.text!r}: {comparison.label} selects several models per seed on "
                                     f"{dataset}; make the selectors more specific")
                interval = t_interval((paired[f"{metric}_b"] - paired[f"{metric}_w"]).tolist())
                row = {"claim": claim.text, "comparison": comparison.label, "dataset": dataset,
                       "paper dataset": stands_in_for.get(dataset, dataset),
                       **_paper_side(paper, comparison, stands_in_for.get(dataset, dataset)),
                       "ours: mean difference": interval.mean, "95% CI low": interval.low,
                       "95% CI high": interval.high, "seeds": interval.n}
                verdict = interval.verdict
                if episodes is not None and not episodes.empty and "run" in better.columns:
                    episode_interval = _episode_interval(episodes, better, worse, dataset)
                    if episode_interval is not None:
                        row.update({"episodes: 95% CI low": episode_interval.low,
                                    "episodes: 95% CI high": episode_interval.high})
                        if episode_interval.verdict != verdict:
                            verdict = UNCLEAR
                row["verdict"] = verdict
                out.append(row)
    return pd.DataFrame(out)


def _paper_side(paper: pd.DataFrame | None, comparison: Comparison, dataset: str) -> dict[str, Any]:
    if paper is None:
        return {"paper": "n/a"}
    frame = paper[paper["dataset"] == dataset]
    better, worse = _select(frame, comparison.better), _select(frame, comparison.worse)
    if len(better) != 1 or len(worse) != 1:
        return {"paper": "n/a"}
    b, w = float(better["value"].iloc[0]), float(worse["value"].iloc[0])
    return {"paper": HOLDS if b > w else "does not hold", "paper: difference": b - w}


def _episode_interval(episodes: pd.DataFrame, better: pd.DataFrame, worse: pd.DataFrame, dataset: str):
    keys = ["seed", "way", "shot", "episode"]
    b_run, w_run = better["run"].iloc[0], worse["run"].iloc[0]
    way = better["way"].iloc[0] if "way" in better.columns else None
    frame = episodes[episodes["dataset"] == dataset]
    if way is not None:
        frame = frame[frame["way"] == way]
    b = frame[frame["run"] == b_run]
    w = frame[frame["run"] == w_run]
    if b.empty or w.empty:
        return None
    paired = b[keys + ["accuracy"]].merge(w[keys + ["accuracy"]], on=keys, suffixes=("_b", "_w"))
    return t_interval((paired["accuracy_b"] - paired["accuracy_w"]).tolist())


def summarize_verdicts(judged: pd.DataFrame, claims: Sequence[Claim] = (), paper: pd.DataFrame | None = None,
                       stands_in_for: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per (claim, dataset of ours): how many of its comparisons hold, are reversed or are
    not distinguishable on our numbers, and how many of *all* the claim's comparisons hold
    on the paper's numbers for the dataset ours stands in for (the paper's grid may be
    larger than the one a scale runs)."""
    if judged.empty:
        return pd.DataFrame(columns=["claim", "dataset", "paper", *VERDICTS])
    by_text = {claim.text: claim for claim in claims}
    stands_in_for = dict(stands_in_for or {})
    rows = []
    for (text, dataset), group in judged.groupby(["claim", "dataset"], sort=False):
        claim = by_text.get(text)
        if claim is not None and paper is not None:
            sides = [_paper_side(paper, c, stands_in_for.get(dataset, dataset))["paper"] for c in claim.comparisons]
        else:
            sides = list(group["paper"])
        checked = [side for side in sides if side != "n/a"]
        rows.append({"claim": text, "dataset": dataset,
                     "paper": f"{checked.count(HOLDS)}/{len(checked)}" if checked else "n/a",
                     **{v: int((group["verdict"] == v).sum()) for v in VERDICTS}})
    return pd.DataFrame(rows)
