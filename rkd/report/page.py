"""What every page shows, written once: the box at the top, the protocol table, the
paper's numbers beside ours (mean ± std over seeds) with the difference, the claims
with their intervals, and the summary record the book's summary page reads.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from ..runs.policies import DRY_RUN
from ..runs.results import STORED_SCALES, scale_dir
from ..runs.runner import Results
from .claims import (claim_summary, claims_html, claims_intro, claims_record, comparisons_html,
                     convergence_sentence, forest_png, judged_claims, shown_rows)
from .stats import ADJUSTMENT
from .verdicts import count_sentence

__all__ = ["seed_table", "side_by_side", "summary_box", "plan_html", "summary_record", "SUMMARY_MIME",
           "show_box", "show_plan", "show_samples", "show_side_by_side", "show_claims", "show_figure",
           "show_training_curves", "show_all_numbers", "publish_summary", "compact_png", "alt_text"]

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
        # a difference only where the data are the paper's: a stand-in's values are not comparable
        shown = ("paper", "ours (mean ± std)", "ours − paper")[:3 if paper_name == dataset else 2]
        for i, what in enumerate(shown):
            blocks[(label, what)] = [column[key][i] for key in index]
        if best is not None:
            # the authors kept the checkpoint with the best *test* score: shown for comparison
            # with the paper's numbers only, never used for our verdicts
            found = {tuple(r[k] for k in keys): r for _, r in best[best["dataset"] == dataset].iterrows()}
            if found:  # none on the test sets a run is only evaluated on (Figure 3's other domains)
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


def summary_box(results: Results, *, data: str, judged: pd.DataFrame | None = None,
                convergence: str | None = None) -> str:
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
        ("Executed on", f'<span class="rkd-machine">{html.escape(results.machine)}</span> '
                     f"(<code>{html.escape(results.device)}</code>); results {pin}"),
        ("Date", f'<span class="rkd-date">{html.escape(results.date)}</span>'),
        ("Seeds", f"{', '.join(map(str, results.seeds))}: every number is the mean ± std over them"),
        ("Protocol", f"<code>{html.escape(results.protocol)}</code> (see the Fidelity page)"),
    ]
    if not results.pretraining.empty:
        trunks = ", ".join(f"<code>{r['network']}</code> {r['top1']:.1f}%" for _, r in results.pretraining.iterrows())
        items.append(("Pretraining", f"the trunks that play ImageNet weights, top-1 on held-out renders of the "
                                     f"pretraining corpus: {trunks}"))
    evidence = results.extra.get("evidence")
    if evidence and evidence["runs"] and not results.dry_run:
        items.append(("Evidence", evidence_sentence(results.experiment, evidence, results.scale)))
    if convergence is not None:
        items.append(("Convergence", convergence))
    if judged is not None and not judged.empty:
        items.append(("Verdicts", "; ".join(
            f"{role} ({ADJUSTMENT[role]}-adjusted): {count_sentence(list(part['verdict']))}"
            for role, part in judged.groupby("role", sort=False))))
    body = "".join(f"<li><b>{k}:</b> {v}</li>" for k, v in items)
    return (f'<div class="admonition note"><p class="admonition-title">At a glance</p>'
            f'<ul class="simple">{body}</ul></div>')


def evidence_sentence(experiment: str, evidence: dict[str, Any], scale: str = "ci") -> str:
    """How many training runs the page rests on, their cost, where they come from and, at
    a scale the results store keeps, the one command that retrains any one of them (HTML)."""
    dates = evidence["dates"]
    when = "" if not dates else f" on {dates[0]}" if len(dates) == 1 else f" between {dates[0]} and {dates[-1]}"
    where = f" on {html.escape(', '.join(evidence['machines']))}" if evidence["machines"] else ""
    store = scale_dir(PurePosixPath("results"), scale) / (evidence["store"] or "")
    source = (f"read from <code>{html.escape(str(store))}</code>, " if evidence["store"] else
              "trained when the page was executed, ")
    sentence = (f"{evidence['runs']} training runs ({evidence['core_hours']:.1f} core-hours), {source}trained"
                f"{where}{when}.")
    if not evidence["example_key"] or scale not in STORED_SCALES:
        return sentence
    command = (f"python -m rkd.experiments.results verify {experiment} --key {evidence['example_key']}"
               + ("" if scale == "ci" else f" --scale {scale}"))
    return (f"{sentence} To retrain any one of them with its chain (trunk, teacher, student) and compare every "
            f"number bit for bit: <code>{html.escape(command)}</code> (another run: its <code>key</code> in the "
            f"store).")


def summary_record(experiment, results: Results, table_rows: Sequence[Mapping[str, Any]],
                   judged: pd.DataFrame, summary: pd.DataFrame) -> dict[str, Any]:
    """The record the book's summary page reads (MIME type :data:`SUMMARY_MIME`)."""
    return {
        "experiment": experiment.name,
        "title": experiment.title,
        "page": experiment.page,
        "scale": results.scale,
        "seeds": list(results.seeds),
        "rows": [dict(r) for r in table_rows],
        "claims": claims_record(judged, summary),
    }


def _display(obj) -> None:
    from IPython.display import display

    display(obj)


def show_box(experiment, results: Results) -> None:
    """Display the page's opening box (:func:`summary_box`): scale, data, hardware, seeds,
    protocol, the verdicts counted and how many runs converged."""
    from IPython.display import HTML

    judged = judged_claims(experiment, results)
    _display(HTML(summary_box(results, data=experiment.describe_data(results), judged=judged,
                              convergence=convergence_sentence(shown_rows(experiment, results)))))


def show_plan(results: Results) -> None:
    """Display the protocol, run by run, as a collapsed table (:func:`plan_html`)."""
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


def side_by_side_table(experiment, results: Results) -> pd.DataFrame:
    """The paper's numbers beside ours, as :func:`side_by_side` builds them for this page."""
    return side_by_side(experiment.paper(), shown_rows(experiment, results), experiment.keys, experiment.metric,
                        stands_in_for=experiment.stands_in_for(results), order=experiment.order(results))


def show_side_by_side(experiment, results: Results) -> None:
    """Display the paper's numbers beside ours (:func:`side_by_side`) as an HTML table."""
    # HTML only: a DataFrame's text/plain twin would double the page's stored size
    show_table(side_by_side_table(experiment, results))


def show_table(frame: pd.DataFrame, **options) -> None:
    """``frame`` as an HTML table only (``options`` go to ``DataFrame.to_html``)."""
    from IPython.display import HTML

    _display(HTML(frame.to_html(na_rep="—", border=0, **options)))


def show_claims(experiment, results: Results) -> None:
    """The claims section: how they were judged, the forest plot, one line per claim and
    every comparison in a collapsed table."""
    from IPython.display import HTML, Image, Markdown

    judged = judged_claims(experiment, results)
    _display(Markdown(claims_intro(judged, results.scale)))
    drawn = forest_png(judged, compact_png)
    if drawn is not None:
        png, alt = drawn
        _display(Image(data=png, metadata={"alt": alt}))
    _display(HTML(claims_html(claim_summary(experiment, results)) + comparisons_html(judged)))


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
    png = compact_png(figure, colors=64, dpi=80)  # small panels of lines: 64 colours and 80 dpi show them whole
    _display(Image(data=png, metadata={"alt": f"training curves of {len(shown)} runs on {dataset}, "
                                              f"seed {seed}: loss terms against the step"}))
    plt.close(figure)


def compact_png(fig, *, colors: int = 256, dpi: float | None = None) -> bytes:
    """``fig`` rendered as matplotlib's inline backend would (tight box, its dpi or ``dpi``), then
    reduced to a ``colors``-colour palette without dithering (dithering adds noise that
    costs bytes and blurs thin lines). Integer arithmetic only: the same bytes on every
    CPU for the same render."""
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", facecolor="white", dpi=dpi or "figure")
    rgb = PILImage.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    palette = rgb.quantize(colors=colors, method=PILImage.Quantize.MEDIANCUT, dither=PILImage.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def show_all_numbers(results: Results) -> None:
    """Display every result row (each run and seed, rounded to 2 decimals) in a collapsed table,
    without the columns that are the same on every row of a page (scale, protocol: the box
    at the top gives them) or only steer the verdicts (whether a run trains)."""
    from IPython.display import HTML

    shown = results.rows.drop(columns=["protocol", "scale", "trains"], errors="ignore")
    _display(HTML(f"<details><summary><b>Every run and seed</b> ({len(shown)} rows; click to open)</summary>"
                  f"{shown.round(2).to_html(index=False, na_rep='—', border=0)}</details>"))


def row_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """A readable name for one row of a table: ``RKD-DA, d=16, L2``, ``generation 2``."""
    described = {"embedding_dim": lambda v: f"d={v}", "l2_normalize": lambda v: "L2" if v == "yes" else "no L2",
                 "way": lambda v: f"{v}-way", "shot": lambda v: f"{v}-shot", "generation": lambda v: f"generation {v}"}
    return ", ".join(described.get(k, str)(v) for k, v in sorted(zip(keys, values), key=lambda kv: kv[0] != "method"))


def publish_summary(experiment, results: Results) -> None:
    """The record the book's summary page reads, as an output of MIME type :data:`SUMMARY_MIME`:
    the paper's number and ours per row (the difference only where the data are the same)."""
    table = side_by_side_table(experiment, results)
    stands_in_for = experiment.stands_in_for(results)
    rows = []
    for key, values in table.iterrows():
        label = row_label(experiment.keys, key if isinstance(key, tuple) else (key,))
        for column in dict.fromkeys(c[0] for c in table.columns):
            dataset = column.split(" (for ")[0]
            paper, ours = values[(column, "paper")], values[(column, "ours (mean ± std)")]
            mean, _, std = ours.partition(" ± ")
            same_data = stands_in_for.get(dataset, dataset) == dataset
            rows.append({"what": label, "dataset": dataset, "paper dataset": stands_in_for.get(dataset, dataset),
                         "paper": _number(paper), "ours_mean": _number(mean), "ours_std": _number(std),
                         "difference": _number(mean) - _number(paper) if same_data and _number(paper) is not None
                         and _number(mean) is not None else None})
    record = summary_record(experiment, results, rows, judged_claims(experiment, results),
                            claim_summary(experiment, results))
    _display_raw({SUMMARY_MIME: record, "text/plain": f"summary record of {experiment.title} for the book"})


def _display_raw(bundle: dict) -> None:
    from IPython.display import display

    display(bundle, raw=True)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
