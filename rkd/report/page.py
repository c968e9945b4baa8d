"""What every page shows, written once: the box at the top, the protocol table, the
paper's numbers beside ours (mean ± std over seeds) with the difference, the claims
with their intervals, and the summary record the book's summary page reads.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..runs.policies import DRY_RUN
from ..runs.runner import Results
from .stats import HOLDS, REVERSED, UNCLEAR, VERDICTS, summarize_verdicts

__all__ = ["seed_table", "side_by_side", "summary_box", "plan_html", "verdict_table", "verdict_markdown",
           "summary_record", "SUMMARY_MIME"]

#: the MIME type of the record each page leaves for the book's summary page
SUMMARY_MIME = "application/vnd.rkd.summary+json"


def seed_table(rows: pd.DataFrame, keys: Sequence[str], metric: str) -> pd.DataFrame:
    """Mean, standard deviation and number of seeds of ``metric`` per (dataset, keys)."""
    grouped = rows.groupby(["dataset", *keys], sort=False)[metric]
    return grouped.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else float("nan"),
                       seeds="count").reset_index()


def side_by_side(paper: pd.DataFrame | None, rows: pd.DataFrame, keys: Sequence[str], metric: str, *,
                 stands_in_for: Mapping[str, str], order: Sequence[tuple] | None = None) -> pd.DataFrame:
    """The paper's number, ours (mean ± std over seeds) and ours minus the paper's, one
    row per ``keys``, one column block per dataset of ours (beside the paper's dataset
    it stands in for). Columns are (our dataset, what): names never collide, whether
    our datasets are stand-ins or the paper's own."""
    table = seed_table(rows, keys, metric)
    best_column = f"best_{metric}"
    best = (seed_table(rows.dropna(subset=[best_column]), keys, best_column)
            if best_column in rows.columns and rows[best_column].notna().any() else None)
    blocks = {}
    index = list(dict.fromkeys(tuple(r) for r in table[list(keys)].itertuples(index=False)))
    if paper is not None:
        index = list(dict.fromkeys(index + [tuple(r) for r in paper[list(keys)].itertuples(index=False)]))
    for dataset, ours in table.groupby("dataset", sort=False):
        paper_name = stands_in_for.get(dataset, dataset)
        theirs = paper[paper["dataset"] == paper_name] if paper is not None else None
        ours_by_key = {tuple(r[k] for k in keys): r for _, r in ours.iterrows()}
        paper_by_key = ({tuple(r[k] for k in keys): float(r["value"]) for _, r in theirs.iterrows()}
                        if theirs is not None else {})
        column = {}
        for key in index:
            p = paper_by_key.get(key)
            o = ours_by_key.get(key)
            mean = None if o is None else float(o["mean"])
            std = None if o is None else float(o["std"])
            column[key] = (
                "—" if p is None else f"{p:.2f}",
                "—" if o is None else (f"{mean:.2f}" if not math.isfinite(std) else f"{mean:.2f} ± {std:.2f}"),
                "—" if p is None or o is None else f"{mean - p:+.2f}",
            )
        label = dataset if paper_name == dataset else f"{dataset} (for {paper_name})"
        for i, what in enumerate(("paper", "ours (mean ± std)", "ours − paper")):
            blocks[(label, what)] = [column[key][i] for key in index]
        if best is not None:
            # the authors kept the checkpoint with the best *test* score: shown for comparison
            # with the paper's numbers only, never used for our verdicts
            found = {tuple(r[k] for k in keys): r for _, r in best[best["dataset"] == dataset].iterrows()}
            blocks[(label, "best on test, as the authors selected")] = [
                "—" if key not in found else f"{found[key]['mean']:.2f}" for key in index]
    frame = pd.DataFrame(blocks, index=pd.MultiIndex.from_tuples(index, names=list(keys)))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    if order is not None:
        rank = {tuple(k): i for i, k in enumerate(order)}
        frame = frame.iloc[sorted(range(len(frame)), key=lambda i: rank.get(frame.index[i], len(rank)))]
    return frame


def plan_html(plan: pd.DataFrame, *, title: str = "The protocol, run by run") -> str:
    """The plan table in a collapsed ``<details>`` block."""
    shown = plan.drop(columns=["protocol"], errors="ignore")
    return (f"<details><summary><b>{html.escape(title)}</b> ({len(plan)} training runs; click to open)</summary>"
            f"{shown.to_html(index=False, na_rep='—', border=0, classes='rkd-plan')}</details>")


def verdict_table(judged: pd.DataFrame) -> pd.DataFrame:
    """The judged comparisons as a page shows them."""
    if judged.empty:
        return judged
    shown = judged.copy()
    shown["ours: mean difference [95% CI]"] = [
        f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else f"{m:+.2f} (one seed: no interval)"
        for m, lo, hi in zip(shown["ours: mean difference"], shown["95% CI low"], shown["95% CI high"])
    ]
    columns = ["claim", "dataset", "comparison", "paper", "ours: mean difference [95% CI]"]
    if "episodes: 95% CI low" in shown.columns:
        shown["episodes: 95% CI"] = [
            "—" if pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
            for lo, hi in zip(shown["episodes: 95% CI low"], shown["episodes: 95% CI high"])]
        columns.append("episodes: 95% CI")
    return shown[columns + ["verdict"]].set_index(["claim", "dataset", "comparison"])


def verdict_markdown(judged: pd.DataFrame, scale: str, summary: pd.DataFrame | None = None) -> str:
    """One line per claim and dataset: our verdicts counted, beside the paper's."""
    summary = summarize_verdicts(judged) if summary is None else summary
    if summary.empty:
        return "No claim could be checked on these runs."
    lines = [f"On our numbers at `scale={scale!r}` (95% t-intervals of the paired difference over seeds):", ""]
    for _, row in summary.iterrows():
        total = row[HOLDS] + row[REVERSED] + row[UNCLEAR]
        counts = ", ".join(f"{row[v]} {v}" for v in VERDICTS if row[v])
        word = (HOLDS if row[HOLDS] == total else REVERSED if row[REVERSED] == total
                else "mixed" if row[HOLDS] and row[REVERSED] else UNCLEAR if row[UNCLEAR] == total else "partly")
        lines.append(f"- *{row['claim']}* on {row['dataset']}: **{word}** ({counts} of {total} comparisons; "
                     f"on the paper's numbers, at the paper's own sizes and settings: {row['paper']}).")
    return "\n".join(lines)


def summary_box(results: Results, *, data: str, judged: pd.DataFrame | None = None) -> str:
    """The box each results page opens with, as HTML: scale, data, hardware, date,
    seeds, protocol and the verdicts counted."""
    paper_scale = results.scale == "paper"
    scale_text = ("the paper's protocol and data" if paper_scale else
                  html.escape(DRY_RUN.describe()) if results.dry_run else
                  "offline stand-in data on the CPU: <b>not paper-scale numbers</b>; compare orderings and "
                  "verdicts with the paper, not values")
    pin = ("bit-identical on any x86-64 CPU with AVX2 (the CPU pin was in effect)" if results.pinned else
           "not bit-reproducible on other hardware" + ("" if results.device.startswith("cuda") else
                                                        " (the CPU pin was not in effect)"))
    items = [
        ("Scale", f"<code>{html.escape(results.scale)}</code>: {scale_text}"),
        ("Data", data),
        ("Hardware", f'<span class="rkd-machine">{html.escape(results.machine)}</span> '
                     f"(<code>{html.escape(results.device)}</code>); results {pin}"),
        ("Date", f'<span class="rkd-date">{html.escape(results.date)}</span>'),
        ("Seeds", f"{', '.join(map(str, results.seeds))}: every number is the mean ± std over them"),
        ("Protocol", f"<code>{html.escape(results.protocol)}</code> (see the Fidelity page)"),
    ]
    if not results.pretraining.empty:
        trunks = ", ".join(f"<code>{r['network']}</code> {r['top1']:.1f}%" for _, r in results.pretraining.iterrows())
        items.append(("Pretraining", f"the trunks that play ImageNet weights, top-1 on held-out renders of the "
                                     f"pretraining corpus: {trunks}"))
    if judged is not None and not judged.empty:
        counts = judged["verdict"].value_counts()
        items.append(("Verdicts", f"{len(judged)} comparisons: " + ", ".join(
            f"{int(counts.get(v, 0))} {v}" for v in VERDICTS)))
    body = "".join(f"<li><b>{k}:</b> {v}</li>" for k, v in items)
    return (f'<div class="admonition note"><p class="admonition-title">At a glance</p>'
            f'<ul class="simple">{body}</ul></div>')


def summary_record(experiment, results: Results, table_rows: Sequence[Mapping[str, Any]],
                   judged: pd.DataFrame) -> dict[str, Any]:
    """The record the book's summary page reads (MIME type :data:`SUMMARY_MIME`)."""
    claims = []
    for _, row in judged.iterrows():
        claims.append({
            "claim": f"{row['claim']} ({row['comparison']}, {row['dataset']})",
            "verdict": row["verdict"],
            "interval": [_finite(row["95% CI low"]), _finite(row["95% CI high"])],
            "paper": row["paper"],
        })
    return {
        "experiment": experiment.name,
        "title": experiment.title,
        "page": experiment.page,
        "scale": results.scale,
        "seeds": list(results.seeds),
        "rows": [dict(r) for r in table_rows],
        "claims": claims,
    }


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# ------------------------------------------------------------------------------ page cells
#
# One function per cell of a results page (see rkd.experiments.notebook): each takes the
# experiment and its results and displays what the cell shows.


def _display(obj) -> None:
    from IPython.display import display

    display(obj)


def show_box(experiment, results: Results) -> None:
    from IPython.display import HTML

    judged = judged_claims(experiment, results)
    _display(HTML(summary_box(results, data=experiment.describe_data(results), judged=judged)))


def show_plan(results: Results) -> None:
    from IPython.display import HTML

    _display(HTML(plan_html(results.plan)))


def show_samples(experiment, results: Results) -> None:
    """Mosaics of the stand-in images the page's models train on (ci scale; nothing at
    paper scale, whose data the reader has)."""
    from IPython.display import Image, Markdown

    stand_ins = [d for d in results.datasets if d.stands_in_for is not None]
    if stand_ins:
        lines = ["| the paper's dataset | played here by | registry name |", "|---|---|---|"]
        lines += [f"| {d.stands_in_for} | {d.display} | `{d.name}` |" for d in stand_ins]
        _display(Markdown("\n".join(lines)))
    for caption, png, width in experiment.samples(results) or ():
        _display(Markdown(f"*{caption}*"))
        # twice the images' own size, sharp (pixelated) in the page
        _display(Image(data=png, width=2 * width, metadata={"alt": f"sample training images: {caption}"}))


def shown_rows(experiment, results: Results) -> pd.DataFrame:
    """Our rows as tables and claims read them: in the paper's keys, without the
    intermediate models (FitNet's hint stage) that the paper does not report."""
    rows = experiment.keyed(results.rows)
    return rows[rows["role"] != "hint"] if "role" in rows.columns else rows


def side_by_side_table(experiment, results: Results) -> pd.DataFrame:
    """The paper's numbers beside ours, as :func:`side_by_side` builds them for this page."""
    return side_by_side(experiment.paper(), shown_rows(experiment, results), experiment.keys, experiment.metric,
                        stands_in_for=experiment.stands_in_for(results), order=experiment.order(results))


def show_side_by_side(experiment, results: Results) -> None:
    # HTML only: a DataFrame's text/plain twin would double the page's stored size
    show_table(side_by_side_table(experiment, results))


def show_table(frame: pd.DataFrame, **options) -> None:
    """``frame`` as an HTML table only (``options`` go to ``DataFrame.to_html``)."""
    from IPython.display import HTML

    _display(HTML(frame.to_html(na_rep="—", border=0, **options)))


def judged_claims(experiment, results: Results) -> pd.DataFrame:
    """Every comparison of every claim, judged (cached on the results object)."""
    if "judged" not in results.extra:
        from .stats import judge

        rows = shown_rows(experiment, results)
        claims = experiment.claims(rows)
        judged = judge(claims, rows, experiment.metric, paper=experiment.paper(), episodes=results.episodes,
                       stands_in_for=experiment.stands_in_for(results))
        results.extra["judged"] = judged
        results.extra["verdicts"] = summarize_verdicts(judged, claims, experiment.paper(),
                                                       experiment.stands_in_for(results))
    return results.extra["judged"]


def show_claims(experiment, results: Results) -> None:
    from IPython.display import Markdown

    judged = judged_claims(experiment, results)
    _display(Markdown(verdict_markdown(judged, results.scale, results.extra["verdicts"])))
    if not judged.empty:
        show_table(verdict_table(judged))


def show_figure(experiment, results: Results) -> None:
    """The page's figure (or figures) as compact PNGs: 256-colour palette images, about a
    third the size of matplotlib's RGBA ones and indistinguishable from them for line
    plots and thumbnails, which keeps the committed notebooks small."""
    import matplotlib.pyplot as plt
    from IPython.display import Image

    drawn = experiment.figure(results)
    figures = [] if drawn is None else list(drawn) if isinstance(drawn, (list, tuple)) else [drawn]
    for fig in figures:
        _display(Image(data=compact_png(fig), metadata={"alt": alt_text(fig, f"{experiment.title}: a figure")}))
        plt.close(fig)  # closed, so the inline backend does not show it a second time


def alt_text(fig, fallback: str) -> str:
    """A figure's alt text for the page: its title and its panels' titles and axis labels."""
    parts = [fig._suptitle.get_text()] if getattr(fig, "_suptitle", None) is not None else []
    for ax in fig.axes[:6]:
        described = ", ".join(t for t in (ax.get_title(), ax.get_ylabel() and f"{ax.get_ylabel()} against "
                                          f"{ax.get_xlabel() or 'the categories'}") if t)
        if described:
            parts.append(described)
    more = f" ({len(fig.axes)} panels)" if len(fig.axes) > 6 else ""
    return ("; ".join(dict.fromkeys(p for p in parts if p)) or fallback) + more


def show_training_curves(experiment, results: Results, *, most: int = 16) -> None:
    """The training curves of one run of each method (the page's first dataset, the first
    seed): how every loss term moved, and the evaluations along training, for a reader who
    wants to see that training converged."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, Markdown

    from .plots import training_curves

    if not results.datasets or not results.seeds:
        _display(Markdown("*No training curves: these results name no dataset or no seed.*"))
        return
    dataset, seed = results.datasets[0].display, results.seeds[0]
    chosen: dict[str, Any] = {}  # run -> its trained run, the first run of each kind
    kinds_chosen = set()
    for (shown_dataset, run, shown_seed), trained in results.trained.items():
        job_run = trained.job.run
        kind = (job_run.role, job_run.method)  # the teacher, trained with a student's method, is a kind of its own
        if (shown_dataset, shown_seed) == (dataset, seed) and trained.losses and kind not in kinds_chosen:
            chosen[run] = trained
            kinds_chosen.add(kind)
    if not chosen:
        _display(Markdown("*No training curves: a dry run keeps none.*"))
        return
    shown = dict(list(chosen.items())[:most])
    figure = training_curves(shown)
    more = f", the first {most} of {len(chosen)}" if len(chosen) > most else ""
    _display(Markdown(f"*{dataset}, seed {seed}: the first training run of each role and method "
                      f"({len(shown)} runs{more}): each weighted loss term and their total (black), averaged "
                      f"over stretches of steps; red dots, right axis: evaluations on the test classes during "
                      f"training.*"))
    _display(Image(data=compact_png(figure), metadata={"alt": f"training curves of {len(shown)} runs on {dataset}, "
                                                              f"seed {seed}: loss terms against the step"}))
    plt.close(figure)


def compact_png(fig, *, colors: int = 256) -> bytes:
    """``fig`` rendered as matplotlib's inline backend would (tight box, its dpi), then
    reduced to a ``colors``-colour palette without dithering (dithering adds noise that
    costs bytes and blurs thin lines). Integer arithmetic only: the same bytes on every
    CPU for the same render."""
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", facecolor="white")
    rgb = PILImage.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    palette = rgb.quantize(colors=colors, method=PILImage.Quantize.MEDIANCUT, dither=PILImage.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def show_all_numbers(results: Results) -> None:
    from IPython.display import HTML

    shown = results.rows.drop(columns=["protocol"], errors="ignore")
    _display(HTML(f"<details><summary><b>Every run and seed</b> ({len(shown)} rows; click to open)</summary>"
                  f"{shown.round(2).to_html(index=False, na_rep='—', border=0)}</details>"))


def publish_summary(experiment, results: Results) -> None:
    """The record the book's summary page reads, as an output of MIME type :data:`SUMMARY_MIME`."""
    table = side_by_side_table(experiment, results)
    rows = []
    for key, values in table.iterrows():
        label = " ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        for dataset in dict.fromkeys(c[0] for c in table.columns):
            paper, ours, difference = (values[(dataset, w)] for w in ("paper", "ours (mean ± std)", "ours − paper"))
            mean, _, std = ours.partition(" ± ")
            rows.append({"what": f"{label}, {dataset}", "paper": _number(paper), "ours_mean": _number(mean),
                         "ours_std": _number(std), "difference": _number(difference)})
    record = summary_record(experiment, results, rows, judged_claims(experiment, results))
    _display_raw({SUMMARY_MIME: record, "text/plain": f"summary record of {experiment.title} for the book"})


def _display_raw(bundle: dict) -> None:
    from IPython.display import display

    display(bundle, raw=True)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
