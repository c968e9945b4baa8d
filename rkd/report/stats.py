"""Claims judged with statistics: paired differences over seeds, tests of the shape the
paper states, multiplicity adjustment per page, power, convergence, and a verdict.

**Claims and comparisons.** A claim of the paper is a :class:`Claim` (its sentence and a
role) holding :class:`Comparison` s. A comparison selects two models by key columns
(``{"method": "RKD-DA", "embedding_dim": 16}``) and judges the paired per-seed
difference ``first - second`` (every seed trains both sides on the same data from the
same draw) with one of four kinds, each a three-way decision:

- :data:`BEATS`, "``first`` beats ``second``": the two-sided paired t-test; verdict
  :data:`HOLDS`, :data:`REVERSED` or :data:`UNCLEAR` (not distinguishable at this scale);
- :data:`FALLS_BELOW`, "``first`` falls (far) below ``second``": the same test read in the
  paper's direction (holds when the difference is negative);
- :data:`EQUIVALENCE`, "equivalent within +-``margin``": TOST (two one-sided tests);
  :data:`EQUIVALENT`, :data:`NOT_EQUIVALENT` or :data:`UNDECIDED`;
- :data:`NON_INFERIORITY`, "at most ``margin`` worse": :data:`NON_INFERIOR`,
  :data:`INFERIOR` or :data:`UNDECIDED`.

Every kind tests each direction of its decision at half the level, as a two-sided test
does (:func:`rkd.report.inference.decision_p_value`; for TOST this is the convention of
a 95% interval inside the margins rather than a 90% one), so that one interval decides
both directions and the multiplicity adjustment controls errors in either. The column
``p`` is that decision's p-value.

**Roles and multiplicity.** Each page declares at most five comparisons in
:data:`PRIMARY` claims, the paper's headline statements; every (primary comparison,
dataset) judged on the page is one family, adjusted with Holm's step-down method
(family-wise error rate 0.05). Every other comparison is :data:`EXPLORATORY`: one family
per page, adjusted with Benjamini-Hochberg (false discovery rate 0.05), and labelled so.
One :func:`judge` call is one page.

**Intervals.** Each comparison's interval is the t-interval at confidence ``1 - alpha'``,
``alpha' = alpha * p / p_adjusted`` the level its adjusted test was made at
(:func:`rkd.report.inference.adjusted_level`, ``p_adjusted`` before capping at 1). So
the interval lies beyond the null value (0, or the margins) exactly when the adjusted
p-value is below 0.05: verdict and interval never disagree. For Holm, ``alpha'`` lies
between Bonferroni's ``alpha / m`` and the comparison's own step ``alpha / (m - j + 1)``:
the interval is never wider than the Bonferroni interval (whose simultaneous coverage is
95%) and is the one consistent with the step-down decisions. For Benjamini-Hochberg
``alpha'`` lies between ``alpha j / m`` and ``alpha``. The columns keep the names
``95% CI low`` / ``95% CI high`` (the page's 95% family statement); the column
``confidence`` gives each one's level, ``adjustment`` its method.

**Power.** Each row gives ``MDD``, the minimum detectable difference at 80% power from
the observed paired standard deviation (``paired sd``) and number of seeds (for the margin
kinds: the smallest margin provable when the true difference is 0), at the planning level
``MDD alpha``: ``alpha / m`` for primary comparisons (Holm's strictest step, so it holds
whatever the other comparisons show), ``alpha'`` for exploratory ones; and ``seeds for MDD
≤ target``, the seeds that would bring it to ``target_mdd`` (2 points). Plan other targets
with :func:`rkd.report.inference.seeds_needed` (a plug-in estimate: the spread of a few
seeds is itself uncertain).

**Convergence.** Where ``rows`` has a boolean column ``converged`` (one value per run and
seed, see :mod:`rkd.runs.convergence`; missing or ``None`` for runs that do not train), a
comparison with an unconverged run on either side in any seed gets the verdict
:data:`NOT_CONVERGED` and stays out of its family.

**Few-shot.** Every model of a seed is tested on the same episodes; episodes are clustered
within seeds, so the per-seed difference is the mean of that seed's paired episode
differences, and the interval is the t-interval over seeds (:func:`clustered_interval`),
never one over seeds x episodes.

**The paper's side.** On the paper's numbers a claim holds when they point its way; where
the paper prints its own 95% intervals (a ``ci95`` column of half-widths in the paper
frame, as Table 6 does), only when the interval of the difference,
``+-sqrt(h1^2 + h2^2)`` (the paper gives no paired interval; pairing would only narrow
it), says so, else :data:`PAPER_UNCLEAR`.

**For the page.** ``judge(claims, rows, metric, paper=..., episodes=..., stands_in_for=...)``
returns one row per (claim, comparison, dataset); :func:`rkd.report.verdicts.summarize_verdicts` one per
(claim, dataset) with its ``word`` and a plain ``summary`` sentence;
:func:`rkd.report.forest.forest_plot` draws the judged frame.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from . import inference
from .inference import benjamini_hochberg, holm, minimum_detectable_difference, seeds_needed

__all__ = ["Interval", "t_interval", "clustered_interval", "Comparison", "Claim", "judge", "paper_side",
           "VERDICTS", "KINDS", "ROLES",
           "OUTCOME", "HOLDS", "REVERSED", "UNCLEAR", "EQUIVALENT", "NOT_EQUIVALENT", "NON_INFERIOR", "INFERIOR",
           "UNDECIDED", "NOT_CONVERGED", "PAPER_UNCLEAR", "BEATS", "FALLS_BELOW", "EQUIVALENCE", "NON_INFERIORITY",
           "PRIMARY", "EXPLORATORY", "RRD_CLAIM", "ALPHA", "MAX_PRIMARY", "holm", "benjamini_hochberg",
           "minimum_detectable_difference", "seeds_needed"]

HOLDS, REVERSED, UNCLEAR = "holds", "reversed", "not distinguishable at this scale"
EQUIVALENT, NOT_EQUIVALENT = "equivalent", "not equivalent"
NON_INFERIOR, INFERIOR = "non-inferior", "inferior"
UNDECIDED = "undecided at this scale"
NOT_CONVERGED = "no verdict: not converged"
#: every verdict of ours, in the order pages count them
VERDICTS = (HOLDS, REVERSED, UNCLEAR, EQUIVALENT, NOT_EQUIVALENT, NON_INFERIOR, INFERIOR, UNDECIDED, NOT_CONVERGED)
#: verdict -> what it says about the claim: "supports", "contradicts", "open" or "no verdict"
OUTCOME = {HOLDS: "supports", EQUIVALENT: "supports", NON_INFERIOR: "supports",
           REVERSED: "contradicts", NOT_EQUIVALENT: "contradicts", INFERIOR: "contradicts",
           UNCLEAR: "open", UNDECIDED: "open", NOT_CONVERGED: "no verdict"}
#: the paper's side when its own intervals do not decide
PAPER_UNCLEAR = "not distinguishable in the paper"

BEATS, FALLS_BELOW, EQUIVALENCE, NON_INFERIORITY = "beats", "falls below", "equivalence", "non-inferiority"
KINDS = (BEATS, FALLS_BELOW, EQUIVALENCE, NON_INFERIORITY)
_TEST = {BEATS: inference.TWO_SIDED, FALLS_BELOW: inference.TWO_SIDED, EQUIVALENCE: inference.TOST,
         NON_INFERIORITY: inference.ONE_SIDED}

PRIMARY, EXPLORATORY = "primary", "exploratory"
ROLES = (PRIMARY, EXPLORATORY)
ADJUSTMENT = {PRIMARY: "Holm", EXPLORATORY: "Benjamini-Hochberg"}
ALPHA = 0.05  # family-wise (primary) and false-discovery (exploratory) rate of a page
MAX_PRIMARY = 5
TARGET_MDD = 2.0  # points: the minimum detectable difference a primary comparison should reach
CONFIDENCE = 1 - ALPHA

#: how the claims of the RRD paper (that RRD beats RKD), judged beside the RKD paper's,
#: begin: the book's RRD page collects them from every page by this prefix
RRD_CLAIM = "RRD's claim: "


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` paired differences and its two-sided t-interval."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        """The verdict of "the difference is positive" from this interval alone."""
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
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    mean = float(values.mean())
    if values.size < 2:
        return Interval(mean, -math.inf, math.inf, int(values.size))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return Interval(mean, mean - half, mean + half, int(values.size))


def clustered_interval(differences: Sequence[float], clusters: Sequence[Any],
                       confidence: float = CONFIDENCE) -> Interval:
    """The t-interval for differences clustered (few-shot: episodes within seeds): each
    cluster's differences are averaged, and the interval is over the cluster means, with
    ``n`` the number of clusters. Treating clusters x members as independent would
    understate the spread between seeds."""
    frame = pd.DataFrame({"difference": list(differences), "cluster": list(clusters)})
    if frame.empty:
        raise ValueError("clustered_interval needs at least one difference")
    return t_interval(frame.groupby("cluster", sort=True)["difference"].mean().tolist(), confidence)


# ------------------------------------------------------------------------------ claims


@dataclass(frozen=True)
class Comparison:
    """One statement about two models, each selected by key columns: the paired
    difference ``first - second`` judged as ``kind`` (see the module docstring);
    ``margin`` (points) for :data:`EQUIVALENCE` and :data:`NON_INFERIORITY` only.
    ``Comparison(a, b)`` says "a beats b"; the class methods spell out the other kinds."""

    first: Mapping[str, Any]
    second: Mapping[str, Any]
    kind: str = BEATS
    margin: float = 0.0
    #: judged only on the paper's dataset of this name (and on ours that stand in for it)
    only_on: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown comparison kind {self.kind!r}; use one of {list(KINDS)}")
        needs_margin = self.kind in (EQUIVALENCE, NON_INFERIORITY)
        if needs_margin and not self.margin > 0:
            raise ValueError(f"a {self.kind} comparison needs a margin > 0 in points, got {self.margin!r}")
        if not needs_margin and self.margin != 0:
            raise ValueError(f"a margin applies to {EQUIVALENCE} and {NON_INFERIORITY} only, not to {self.kind!r}")

    @classmethod
    def falls_below(cls, first: Mapping[str, Any], second: Mapping[str, Any]) -> Comparison:
        """"``first`` falls (far) below ``second``"."""
        return cls(first, second, FALLS_BELOW)

    @classmethod
    def equivalent(cls, first: Mapping[str, Any], second: Mapping[str, Any], margin: float) -> Comparison:
        """"``first`` is equivalent to ``second`` within +-``margin`` points" (TOST)."""
        return cls(first, second, EQUIVALENCE, margin)

    @classmethod
    def not_worse(cls, first: Mapping[str, Any], second: Mapping[str, Any], margin: float) -> Comparison:
        """"``first`` is at most ``margin`` points worse than ``second``" (non-inferiority)."""
        return cls(first, second, NON_INFERIORITY, margin)

    def on(self, dataset: str) -> Comparison:
        """The comparison judged only on the paper's ``dataset`` (and our stand-in for it)."""
        return replace(self, only_on=dataset)

    @property
    def label(self) -> str:
        """The comparison in a few symbols, e.g. ``RKD-DA d=16 L2 > Triplet d=16 L2``."""
        a, b = _describe(self.first), _describe(self.second)
        return {BEATS: f"{a} > {b}", FALLS_BELOW: f"{a} < {b}", EQUIVALENCE: f"{a} ≈ {b} (±{self.margin:g})",
                NON_INFERIORITY: f"{a} ≥ {b} − {self.margin:g}"}[self.kind]


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


@dataclass(frozen=True)
class Claim:
    """A sentence of the paper, the comparisons that check it, and its role:
    :data:`PRIMARY` (a headline statement, Holm-adjusted) or :data:`EXPLORATORY`."""

    text: str
    comparisons: tuple[Comparison, ...]
    role: str = EXPLORATORY

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"claim {self.text!r}: unknown role {self.role!r}; use one of {list(ROLES)}")


# ------------------------------------------------------------------------------ judging


def _select(frame: pd.DataFrame, selector: Mapping[str, Any]) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for key, value in selector.items():
        if key not in frame.columns:
            return frame.iloc[0:0]
        mask &= frame[key] == value
    return frame[mask]


def _unconverged(side: pd.DataFrame) -> bool:
    return "converged" in side.columns and bool(side["converged"].eq(False).any())


def judge(claims: Sequence[Claim], rows: pd.DataFrame, metric: str, *, paper: pd.DataFrame | None = None,
          episodes: pd.DataFrame | None = None, stands_in_for: Mapping[str, str] | None = None,
          alpha: float = ALPHA, target_power: float = 0.8, target_mdd: float = TARGET_MDD,
          max_primary: int = MAX_PRIMARY) -> pd.DataFrame:
    """One row per (claim, comparison, dataset of ours) of one page: the paper's side, our
    mean paired difference with its adjusted interval, raw and adjusted p-values, the
    verdict, the minimum detectable difference and the seeds that would bring it to
    ``target_mdd`` points. Primary rows first, in the order declared.

    ``rows``: our per-seed results (columns ``dataset``, ``seed``, ``metric``, the
    selectors' keys, and optionally ``converged``). ``paper``: the paper's numbers in long
    form (``dataset`` its own, ``value``, optionally ``ci95``). ``stands_in_for``: our
    dataset -> the paper's dataset whose role it plays. ``episodes``: few-shot per-episode
    accuracies (``dataset``, ``run``, ``seed``, ``way``, ``shot``, ``episode``, ``accuracy``).
    """
    declared = sum(len(c.comparisons) for c in claims if c.role == PRIMARY)
    if declared > max_primary:
        raise ValueError(f"{declared} primary comparisons declared; a page may declare at most {max_primary}: "
                         f"keep the paper's headline statements primary and make the others exploratory")
    stands_in_for = dict(stands_in_for or {})
    found = [_measure(claim, comparison, dataset, ours, metric, episodes)
             for claim in claims for comparison in claim.comparisons
             for dataset, ours in rows.groupby("dataset", sort=False)
             if comparison.only_on in (None, stands_in_for.get(dataset, dataset))]
    found = [f for f in found if f is not None]
    found.sort(key=lambda f: f["role"] != PRIMARY)  # stable: primary first, each in declared order
    for role in ROLES:
        _adjust([f for f in found if f["role"] == role and not f["unconverged"]], role, alpha)
    out = []
    for f in found:
        paper_dataset = stands_in_for.get(f["dataset"], f["dataset"])
        out.append({"claim": f["claim"], "role": f["role"], "kind": f["comparison"].kind,
                    "comparison": f["comparison"].label, "dataset": f["dataset"], "paper dataset": paper_dataset,
                    **paper_side(paper, f["comparison"], paper_dataset),
                    **_our_side(f, alpha, target_power, target_mdd)})
    frame = pd.DataFrame(out)
    if not frame.empty:
        frame["seeds for MDD ≤ target"] = frame["seeds for MDD ≤ target"].astype("Int64")
    return frame


def _measure(claim: Claim, comparison: Comparison, dataset: str, ours: pd.DataFrame, metric: str,
             episodes: pd.DataFrame | None) -> dict[str, Any] | None:
    """The per-seed paired differences of one comparison on one dataset (None when a side
    did not run there)."""
    first, second = _select(ours, comparison.first), _select(ours, comparison.second)
    if first.empty or second.empty:
        return None
    paired = first[["seed", metric]].merge(second[["seed", metric]], on="seed", suffixes=("_a", "_b"))
    if paired["seed"].duplicated().any():
        raise ValueError(f"claim {claim.text!r}: {comparison.label} selects several models per seed on "
                         f"{dataset}; make the selectors more specific")
    differences = (paired[f"{metric}_a"] - paired[f"{metric}_b"]).tolist()
    per_seed_episodes = None
    if episodes is not None and not episodes.empty and "run" in first.columns:
        clustered = _episode_differences(episodes, first, second, dataset)
        if clustered is not None and set(clustered) == set(paired["seed"]):
            differences = [clustered[s][0] for s in paired["seed"]]  # each seed's mean over its episodes
            per_seed_episodes = min(count for _, count in clustered.values())
    return {"claim": claim.text, "role": claim.role, "comparison": comparison, "dataset": dataset,
            "differences": np.asarray(differences, dtype=np.float64), "episodes": per_seed_episodes,
            "unconverged": _unconverged(first) or _unconverged(second)}


def _episode_differences(episodes: pd.DataFrame, first: pd.DataFrame, second: pd.DataFrame,
                         dataset: str) -> dict[Any, tuple[float, int]] | None:
    """seed -> (mean paired episode difference, episodes) for two few-shot models: the
    clusters :func:`clustered_interval` averages."""
    keys = ["seed", "way", "shot", "episode"]
    frame = episodes[episodes["dataset"] == dataset]
    for key in ("way", "shot"):
        if key in first.columns:
            frame = frame[frame[key] == first[key].iloc[0]]
    a = frame[frame["run"] == first["run"].iloc[0]]
    b = frame[frame["run"] == second["run"].iloc[0]]
    if a.empty or b.empty:
        return None
    paired = a[keys + ["accuracy"]].merge(b[keys + ["accuracy"]], on=keys, suffixes=("_a", "_b"))
    paired["difference"] = paired["accuracy_a"] - paired["accuracy_b"]
    grouped = paired.groupby("seed")["difference"]
    return {seed: (float(mean), int(count)) for seed, mean, count in
            zip(grouped.mean().index, grouped.mean().to_numpy(), grouped.count().to_numpy())}


def _adjust(family: list[dict[str, Any]], role: str, alpha: float) -> None:
    """Raw and adjusted p-values and the level of each member's interval, in place."""
    for f in family:
        d, kind = f["differences"], f["comparison"].kind
        sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
        f["p"] = inference.decision_p_value(float(d.mean()), sd, int(d.size), _TEST[kind], f["comparison"].margin)
    if not family:
        return
    adjust = holm if role == PRIMARY else benjamini_hochberg
    p_values = [f["p"] for f in family]
    bonferroni = alpha / len(family)
    for f, p_adjusted, uncapped in zip(family, adjust(p_values), adjust(p_values, cap=False)):
        f["adjusted p"] = float(p_adjusted)
        f["level"] = inference.adjusted_level(f["p"], float(uncapped), alpha, bonferroni)
        f["planning level"] = bonferroni if role == PRIMARY else f["level"]


def _verdict(kind: str, margin: float, low: float, high: float) -> str:
    if kind == BEATS:
        return HOLDS if low > 0 else REVERSED if high < 0 else UNCLEAR
    if kind == FALLS_BELOW:
        return HOLDS if high < 0 else REVERSED if low > 0 else UNCLEAR
    if kind == EQUIVALENCE:
        return EQUIVALENT if -margin < low and high < margin else (
            NOT_EQUIVALENT if low >= margin or high <= -margin else UNDECIDED)
    return NON_INFERIOR if low > -margin else INFERIOR if high < -margin else UNDECIDED


def _our_side(f: dict[str, Any], alpha: float, target_power: float, target_mdd: float) -> dict[str, Any]:
    d, comparison = f["differences"], f["comparison"]
    test, two_sided = _TEST[comparison.kind], _TEST[comparison.kind] == inference.TWO_SIDED
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    if f["unconverged"]:  # out of the family: shown at the unadjusted level, no verdict
        p = inference.decision_p_value(float(d.mean()), sd, int(d.size), test, comparison.margin)
        level = planning = alpha
        adjusted_p = math.nan
    else:
        p, adjusted_p, level, planning = f["p"], f["adjusted p"], f["level"], f["planning level"]
    confidence = 1 - level
    interval = t_interval(d, confidence)
    # the power of the test behind the verdict: two-sided at the level, or each one-sided
    # test (non-inferiority, TOST) at half of it
    test_level = planning if two_sided else planning / 2
    verdict = NOT_CONVERGED if f["unconverged"] else _verdict(comparison.kind, comparison.margin,
                                                                interval.low, interval.high)
    row = {"ours: mean difference": interval.mean, "95% CI low": interval.low, "95% CI high": interval.high,
           "confidence": confidence, "seeds": interval.n, "paired sd": sd, "margin": comparison.margin,
           "p": p, "adjusted p": adjusted_p, "adjustment": "none (no verdict)" if f["unconverged"] else
           ADJUSTMENT[f["role"]], "verdict": verdict,
           "MDD": minimum_detectable_difference(sd, interval.n, test_level, target_power=target_power, test=test),
           "MDD alpha": planning,
           "seeds for MDD ≤ target": seeds_needed(sd, test_level, target=target_mdd, target_power=target_power,
                                                  test=test)}
    if f["episodes"] is not None:
        row["episodes per seed"] = f["episodes"]
    return row


def paper_side(paper: pd.DataFrame | None, comparison: Comparison, dataset: str) -> dict[str, Any]:
    """The claim on the paper's numbers: holds / does not hold, or, where the paper prints
    95% intervals (``ci95`` half-widths), holds only when the difference's interval says so."""
    if paper is None:
        return {"paper": "n/a"}
    frame = paper[paper["dataset"] == dataset]
    first, second = _select(frame, comparison.first), _select(frame, comparison.second)
    if len(first) != 1 or len(second) != 1:
        return {"paper": "n/a"}
    difference = float(first["value"].iloc[0]) - float(second["value"].iloc[0])
    out: dict[str, Any] = {"paper: difference": difference}
    half = math.nan
    if "ci95" in frame.columns:
        half = math.hypot(float(first["ci95"].iloc[0]), float(second["ci95"].iloc[0]))
    if not math.isfinite(half):  # printed numbers only: the claim holds when they point its way
        supports = OUTCOME[_verdict(comparison.kind, comparison.margin, difference, difference)] == "supports"
        return {"paper": HOLDS if supports else "does not hold", **out}
    low, high = difference - half, difference + half
    out.update({"paper: 95% CI low": low, "paper: 95% CI high": high})
    outcome = OUTCOME[_verdict(comparison.kind, comparison.margin, low, high)]
    paper_verdict = HOLDS if outcome == "supports" else "does not hold" if outcome == "contradicts" else PAPER_UNCLEAR
    return {"paper": paper_verdict, **out}
