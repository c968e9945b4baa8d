"""The claims section of a page: the paper's claims judged on our runs
(:func:`rkd.report.stats.judge`), shown as a forest plot, one compact line per claim,
and every comparison in a collapsed table; and the claims' part of the summary record.
"""
from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from ..runs.convergence import LAST_FRACTION, TOLERANCE, converged
from ..runs.runner import Results
from .forest import forest_alt_text, forest_plot
from .stats import ADJUSTMENT, EXPLORATORY, PRIMARY, TARGET_MDD, judge
from .verdicts import count_sentence, summarize_verdicts

__all__ = ["judged_claims", "claim_summary", "claims_html", "comparisons_html", "claims_record", "claims_intro",
           "shown_rows", "mark_converged", "convergence_sentence"]


def shown_rows(experiment, results: Results) -> pd.DataFrame:
    """Our rows as tables and claims read them: in the paper's keys, without the
    intermediate models (FitNet's hint stage) that the paper does not report, each marked
    ``converged`` as its configuration is (:func:`mark_converged`)."""
    rows = experiment.keyed(results.rows)
    rows = rows[rows["role"] != "hint"] if "role" in rows.columns else rows
    return mark_converged(rows, ["dataset", *experiment.keys])


def mark_converged(rows: pd.DataFrame, configuration: list[str]) -> pd.DataFrame:
    """``rows`` with ``converged``: per configuration (the rows sharing ``configuration``'s
    values, one per seed), whether the mean of their ``final_rise`` is within the tolerance
    of :mod:`rkd.runs.convergence`; None for a run that does not train. A run that trains
    but has too few evaluations late in training to be judged (a cut ``ci`` schedule, a
    dry run) has not shown that it converged: False, so it supports no verdict."""
    if "final_rise" not in rows.columns and "trains" not in rows.columns:
        return rows
    rises = _final_rises(rows)
    keys = [k for k in configuration if k in rows.columns]
    decided = rises.groupby([rows[k] for k in keys], sort=False, dropna=False).transform(
        lambda values: converged([None if pd.isna(r) else float(r) for r in values]))
    marked = decided.astype(object).where(decided.notna(), None)
    if "trains" in rows.columns:  # trained, not judged: not shown to have converged
        marked = marked.where(~(rows["trains"].eq(True) & decided.isna()), False)
    return rows.assign(converged=marked)


def judged_claims(experiment, results: Results) -> pd.DataFrame:
    """Every comparison of every claim, judged (computed once per results object)."""
    if "judged" not in results.extra:
        rows = experiment.with_derived(shown_rows(experiment, results), experiment.metric)
        paper = experiment.paper()
        paper = experiment.with_derived(paper, "value") if paper is not None else None
        claims = experiment.claims(rows)
        judged = judge(claims, rows, experiment.metric, paper=paper, episodes=results.episodes,
                       stands_in_for=experiment.stands_in_for(results))
        results.extra["judged"] = judged
        results.extra["verdicts"] = summarize_verdicts(judged, claims, paper, experiment.stands_in_for(results))
    return results.extra["judged"]


def claim_summary(experiment, results: Results) -> pd.DataFrame:
    """One row per (claim, dataset): role, our word and sentence, the paper's count."""
    judged_claims(experiment, results)
    return results.extra["verdicts"]


def _final_rises(rows: pd.DataFrame) -> pd.Series:
    """The rows' ``final_rise``; all NaN where the column is missing (the result rows drop it
    when no run had two evaluations late in training)."""
    return rows["final_rise"] if "final_rise" in rows.columns else pd.Series(float("nan"), index=rows.index)


def convergence_sentence(rows: pd.DataFrame) -> str | None:
    """How many of the page's trained configurations converged, in a sentence (None: not judged)."""
    if "converged" not in rows.columns:
        return None
    keys = [k for k in ("dataset", "run") if k in rows.columns]
    decided = rows.dropna(subset=["converged"]).drop_duplicates(keys)
    if decided.empty:
        return None
    rises = _final_rises(decided)
    unjudged = int((rises.isna() & ~decided["converged"].astype(bool)).sum())
    sentence = (f"{int(decided['converged'].astype(bool).sum())} of {len(decided)} trained configurations converged "
                f"(their metric rose by at most {TOLERANCE:g} points over the last {LAST_FRACTION:.0%} of training, on "
                f"average over the seeds); a comparison with one that did not gets no verdict")
    if unjudged:
        sentence += (f". {unjudged} could not show it: fewer than two evaluations in their last "
                     f"{LAST_FRACTION:.0%} (at `scale=\"ci\"` the schedules are cut; `scale=\"converged\"` decides)")
    return sentence


def _interval(row: pd.Series) -> str:
    mean, low, high = row["ours: mean difference"], row["95% CI low"], row["95% CI high"]
    if not math.isfinite(low):
        return f"{mean:+.2f} (one seed: no interval)"
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def claims_intro(judged: pd.DataFrame, scale: str) -> str:
    """What the section shows and how it was decided, in a few sentences (Markdown)."""
    if judged.empty:
        return "No claim could be checked on these runs."
    primary = judged[judged["role"] == PRIMARY]
    mdd = primary["MDD"].dropna() if "MDD" in primary.columns else pd.Series(dtype=float)
    power = ("" if mdd.empty else
             f" The primary comparisons' minimum detectable difference (80% power, from the observed spread of "
             f"the paired differences) is at most **{mdd.max():.2f} points** (target: {TARGET_MDD:g}).")
    return (f"On our numbers at `scale={scale!r}`: each comparison is the paired difference over seeds (same "
            f"seed, same data), judged at the level its multiplicity adjustment allows: the page's primary "
            f"comparisons, the paper's headline statements declared before the runs, with "
            f"{ADJUSTMENT[PRIMARY]}'s method; every other comparison, exploratory, with "
            f"{ADJUSTMENT[EXPLORATORY]}'s. A comparison with a run that had not converged gets no verdict."
            + power)


def claims_html(summary: pd.DataFrame) -> str:
    """One line per claim and dataset, primary claims first: its word, its count, the paper's."""
    if summary.empty:
        return ""
    lines = []
    for role in (PRIMARY, EXPLORATORY):
        part = summary[summary["role"] == role]
        if part.empty:
            continue
        items = "".join(
            f"<li><b>{html.escape(str(r['word']))}</b>: {html.escape(r['claim'])} on {html.escape(r['dataset'])}"
            f" ({html.escape(r['summary'])}; on the paper's numbers: {html.escape(str(r['paper']))})</li>"
            for _, r in part.iterrows())
        lines.append(f"<p><b>{role.capitalize()}</b> ({ADJUSTMENT[role]}-adjusted)</p><ul>{items}</ul>")
    return "".join(lines)


def comparisons_html(judged: pd.DataFrame) -> str:
    """Every comparison with its interval, p-values, power and both verdicts, collapsed."""
    if judged.empty:
        return ""
    shown = pd.DataFrame({
        "role": judged["role"], "claim": judged["claim"], "dataset": judged["dataset"],
        "comparison": judged["comparison"],
        "paper": [f"{v} ({d:+.2f})" if isinstance(d, float) and math.isfinite(d) else str(v)
                  for v, d in zip(judged["paper"], judged.get("paper: difference", [None] * len(judged)))],
        "ours: mean difference [adjusted 95% CI]": [_interval(r) for _, r in judged.iterrows()],
        "p (adjusted)": [f"{p:.3g} ({q:.3g})" if pd.notna(p) else "—"
                         for p, q in zip(judged["p"], judged["adjusted p"])],
        "MDD": [f"{m:.2f}" if pd.notna(m) else "—" for m in judged["MDD"]],
        "seeds": judged["seeds"],
        "verdict": judged["verdict"],
    })
    table = shown.to_html(index=False, na_rep="—", border=0, classes="rkd-comparisons")
    return (f"<details><summary><b>Every comparison</b> ({len(judged)}; "
            f"{html.escape(count_sentence(list(judged['verdict'])))}; click to open)</summary>{table}</details>")


def forest_png(judged: pd.DataFrame, compact_png) -> tuple[bytes, str] | None:
    """The forest plot as a compact PNG, with its alt text (None: nothing to draw)."""
    import matplotlib.pyplot as plt

    if judged.empty:
        return None
    figure = forest_plot(judged)
    try:
        # a handful of colours (verdicts, markers, text): 32 keep it exact; 80 dpi is still sharper than the
        # book's column shows it (11 inches in about 8), and keeps Table 1's page under its size budget
        return compact_png(figure, colors=32, dpi=80), forest_alt_text(judged)
    finally:
        plt.close(figure)


def claims_record(judged: pd.DataFrame, summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The claims as the book's summary page reads them: one entry per (claim, dataset)."""
    entries = []
    for _, row in summary.iterrows():
        part = judged[(judged["claim"] == row["claim"]) & (judged["dataset"] == row["dataset"])]
        entries.append({
            "claim": row["claim"], "role": row["role"], "dataset": row["dataset"],
            "paper dataset": part["paper dataset"].iloc[0] if "paper dataset" in part.columns else row["dataset"],
            "word": row["word"], "summary": row["summary"], "paper": str(row["paper"]),
            "comparisons": [{
                "comparison": c["comparison"], "verdict": c["verdict"], "paper": c["paper"],
                "difference": _finite(c["ours: mean difference"]),
                "interval": [_finite(c["95% CI low"]), _finite(c["95% CI high"])],
                "paper difference": _finite(c.get("paper: difference")), "MDD": _finite(c.get("MDD")),
            } for _, c in part.iterrows()],
        })
    return entries


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
