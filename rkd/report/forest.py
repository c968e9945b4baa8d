"""The claims of a page at a glance: a forest plot of the judged comparisons.

One row per comparison (a row of :func:`rkd.report.stats.judge`): our mean paired
difference (``first - second``, points) with its multiplicity-adjusted 95% interval, and
the paper's own difference as a hollow diamond on the same axis where the paper has both
numbers (with its 95% interval where it prints one). Primary comparisons come first, on a
shaded block under their own heading; exploratory ones follow under theirs. Each row's
verdict is written beside it, in the colour of what it says about the claim (blue
supports, vermillion contradicts, grey open, light grey dotted no verdict: the Okabe-Ito
colours, told apart by colour-blind readers), so no verdict rests on colour alone. The
margins of equivalence and non-inferiority comparisons are drawn as ticks on their row.

For the page::

    figure = forest_plot(judged)                  # a matplotlib Figure (pyplot-managed: close it)
    alt = forest_alt_text(judged)                 # the image's alt text
    title = forest_title(judged)                  # the heading drawn on it (title="" for none)

The figure is 11 inches wide (the book's page width at 100 dpi) and about a third of an
inch per row, so 5 to 60 rows stay readable at 8-point type.
"""
from __future__ import annotations

import math
import textwrap

import pandas as pd

from .stats import ADJUSTMENT, EQUIVALENCE, EXPLORATORY, NON_INFERIORITY, OUTCOME, PRIMARY
from .verdicts import count_sentence

__all__ = ["forest_plot", "forest_alt_text", "forest_title", "COLOURS", "TEXT_COLOURS"]

#: what a verdict says about its claim -> its colour (Okabe-Ito: safe for colour-blind readers)
COLOURS = {"supports": "#0072B2", "contradicts": "#D55E00", "open": "#6E6E6E", "no verdict": "#B0B0B0"}
#: the verdict words' colours: the same hues, dark enough for small text on white (contrast >= 4.5:1)
TEXT_COLOURS = {"supports": "#0072B2", "contradicts": "#A84A00", "open": "#5F5F5F", "no verdict": "#767676"}
_LEGEND = {"supports": "ours: the claim holds", "contradicts": "ours: against the claim",
           "open": "ours: not decided", "no verdict": "ours: no verdict (not converged)"}
PAPER_OFFSET = 0.3  # the paper's marker sits this far under our interval, so neither hides the other
_LINESTYLE = {"no verdict": ":"}
WIDTH = 11.0  # inches
ROW = 0.32  # inches per comparison
LABEL_WIDTH = 58  # characters of a row label before it wraps
HEADINGS = {PRIMARY: f"Primary: the paper's headline claims ({ADJUSTMENT[PRIMARY]}-adjusted)",
            EXPLORATORY: f"Exploratory ({ADJUSTMENT[EXPLORATORY]}-adjusted; read as leads, not findings)"}


def _ordered(judged: pd.DataFrame) -> pd.DataFrame:
    roles = judged["role"] if "role" in judged.columns else pd.Series(EXPLORATORY, index=judged.index)
    return judged.assign(role=roles).sort_values("role", key=lambda r: r != PRIMARY, kind="stable")


def _label(row: pd.Series, several_datasets: bool) -> str:
    text = row["comparison"] + (f" · {row['dataset']}" if several_datasets else "")
    return "\n".join(textwrap.wrap(text, LABEL_WIDTH, max_lines=2, placeholder=" …"))


def forest_title(judged: pd.DataFrame) -> str:
    """The figure's heading: how many comparisons, and how many of them are primary."""
    if judged.empty:
        return "No comparison could be judged on these runs"
    ordered = _ordered(judged)
    primary = int((ordered["role"] == PRIMARY).sum())
    return (f"{len(ordered)} comparison{'s' * (len(ordered) != 1)} ({primary} primary, "
            f"{len(ordered) - primary} exploratory): ours with adjusted 95% intervals, the paper's as ◇")


def forest_alt_text(judged: pd.DataFrame) -> str:
    """Alt text for the figure: what it shows and the verdicts counted per role."""
    if judged.empty:
        return "No comparison could be judged on these runs."
    ordered = _ordered(judged)
    parts = []
    for role in (PRIMARY, EXPLORATORY):
        verdicts = ordered.loc[ordered["role"] == role, "verdict"].tolist()
        if verdicts:
            parts.append(f"{role} ({ADJUSTMENT[role]}-adjusted): {count_sentence(verdicts)}")
    with_paper = int(ordered.get("paper: difference", pd.Series(dtype=float)).notna().sum())
    return (f"Forest plot of {len(ordered)} paired comparisons, one per row, primary first: our mean "
            f"paired difference in points with its multiplicity-adjusted 95% interval, coloured and labelled by "
            f"verdict, and the paper's own difference as a hollow diamond for {with_paper} of them. "
            + "; ".join(parts) + ".")


def _layout(ordered: pd.DataFrame) -> tuple[list[float], list[tuple[float, str]], dict[str, tuple[float, float]]]:
    """y of each row (top to bottom), the headings' y, and each role's block span."""
    y, rows_y, headings, blocks = 0.0, [], [], {}
    for role in (PRIMARY, EXPLORATORY):
        count = int((ordered["role"] == role).sum())
        if not count:
            continue
        y -= 0.4 if headings else 0.0
        headings.append((y, role))
        top = y + 0.5
        for _ in range(count):
            y -= 1
            rows_y.append(y)
        blocks[role] = (y - 0.5, top)
        y -= 0.6
    return rows_y, headings, blocks


def _x_limits(ordered: pd.DataFrame) -> tuple[float, float]:
    values = [0.0]
    for column in ("95% CI low", "95% CI high", "ours: mean difference", "paper: difference",
                   "paper: 95% CI low", "paper: 95% CI high"):
        if column in ordered.columns:
            values += [float(v) for v in ordered[column] if pd.notna(v) and math.isfinite(float(v))]
    if "margin" in ordered.columns:
        values += [s * float(m) for m in ordered["margin"] if pd.notna(m) and m > 0 for s in (-1, 1)]
    low, high = min(values), max(values)
    pad = 0.06 * (high - low or 1.0)
    return low - pad, high + pad


def forest_plot(judged: pd.DataFrame, *, title: str | None = None, unit: str = "points"):
    """The forest plot of ``judged`` (the frame :func:`rkd.report.stats.judge` returns);
    ``title``: the heading (default :func:`forest_title`; ``""`` for none)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    title = forest_title(judged) if title is None else title
    if judged.empty:
        fig, ax = plt.subplots(figsize=(WIDTH, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, title, ha="center", va="center", fontsize=10)
        return fig
    ordered = _ordered(judged).reset_index(drop=True)
    rows_y, headings, blocks = _layout(ordered)
    height = ROW * (-min(rows_y) + 1.5) + 1.6
    fig, ax = plt.subplots(figsize=(WIDTH, height))
    several = ordered["dataset"].nunique() > 1 if "dataset" in ordered.columns else False
    for role, (bottom, top) in blocks.items():
        if role == PRIMARY:  # the headline claims on a shaded block of their own
            ax.axhspan(bottom, top, color="#0072B2", alpha=0.06, linewidth=0)
    for y, role in headings:
        ax.text(0.0, y, HEADINGS[role], transform=ax.get_yaxis_transform(), ha="left", va="center",
                fontsize=9, fontweight="bold")
    for y, (_, row) in zip(rows_y, ordered.iterrows()):
        _draw_row(ax, y, row)
    ax.axvline(0.0, color="black", linewidth=0.9, zorder=1)
    ax.set_yticks(rows_y, [_label(row, several) for _, row in ordered.iterrows()], fontsize=8)
    ax.set_ylim(min(rows_y) - 0.8, max(y for y, _ in headings) + 0.6)
    ax.set_xlim(*_x_limits(ordered))
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"paired difference, first − second ({unit}); > 0: the first side is higher", fontsize=9)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    handles = [Line2D([], [], color=c, marker="o", linestyle=_LINESTYLE.get(k, "-"), label=_LEGEND[k])
               for k, c in COLOURS.items() if k in set(OUTCOME.get(v, "open") for v in ordered["verdict"])]
    if "paper: difference" in ordered.columns and ordered["paper: difference"].notna().any():
        printed = "paper: 95% CI low" in ordered.columns and ordered["paper: 95% CI low"].notna().any()
        label = "the paper's difference" + (" (its 95% interval where printed)" if printed else "")
        handles.append(Line2D([], [], color="black", marker="D", markerfacecolor="white", linewidth=0.9,
                              linestyle="-" if printed else "", label=label))
    if "margin" in ordered.columns and (ordered["margin"].fillna(0) > 0).any():
        handles.append(Line2D([], [], color="#6E6E6E", marker="|", markersize=10, linestyle="", label="margin"))
    legend_height = 0.35 / height  # the legend under the axis label, inside the figure
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_height, 1, 1))
    return fig


def _draw_row(ax, y: float, row: pd.Series) -> None:
    """One comparison: margins, our interval and mean, the paper's difference, the verdict."""
    outcome = OUTCOME.get(row["verdict"], "open")
    colour = COLOURS[outcome]
    margin = float(row.get("margin", 0.0) or 0.0)
    if margin > 0:
        kind = row.get("kind")
        ticks = (-margin, margin) if kind == EQUIVALENCE else (-margin,) if kind == NON_INFERIORITY else ()
        ax.plot(ticks, [y] * len(ticks), linestyle="", marker="|", markersize=12, color="#6E6E6E", zorder=2)
    mean, low, high = float(row["ours: mean difference"]), float(row["95% CI low"]), float(row["95% CI high"])
    if math.isfinite(low) and math.isfinite(high):
        ax.plot([low, high], [y, y], color=colour, linewidth=2.2, linestyle=_LINESTYLE.get(outcome, "-"),
                solid_capstyle="butt", zorder=3)
    ax.plot([mean], [y], marker="o", markersize=5, color=colour, zorder=4)
    paper = row.get("paper: difference")
    if paper is not None and pd.notna(paper):
        paper_low, paper_high = row.get("paper: 95% CI low"), row.get("paper: 95% CI high")
        if paper_low is not None and pd.notna(paper_low):  # the paper's own interval, where it prints one
            ax.plot([paper_low, paper_high], [y - PAPER_OFFSET] * 2, color="black", linewidth=0.9, zorder=3)
        ax.plot([paper], [y - PAPER_OFFSET], marker="D", markersize=5, markerfacecolor="white",
                markeredgecolor="black", linestyle="", zorder=5)
    word = row["verdict"] + ("" if math.isfinite(low) else " (one seed: no interval)")
    ax.text(1.01, y, word, transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=8,
            color=TEXT_COLOURS[outcome], fontweight="bold" if outcome in ("supports", "contradicts") else "normal")
