"""The performance page's plots, drawn with matplotlib (Agg, no pyplot) from plain numbers.

Two kinds of plot, each a row of panels sharing one legend:

- :func:`draw_sweep`: a measure against a size on log-log axes, a colour per series
  (an embedding width) and a line style per form (ours solid, the baseline dashed), so
  that ours and the baseline at the same size read side by side;
- :func:`draw_bars`: horizontal bars, a bar per category and series, each labelled
  with its value.

A point that was not measured (NaN) is left out of the plot, never drawn as zero. The
PNG files carry no timestamp or version (``metadata={"Software": None}``), so drawing
the same numbers again writes the same bytes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Line", "SweepPanel", "BarPanel", "draw_sweep", "draw_bars"]

#: colours a reader with a colour-vision deficiency can tell apart (Okabe and Ito)
_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
#: the line style and marker of each form, in the order the forms first appear
_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))
_WIDTH_INCHES = 8.0
_DPI = 150


@dataclass(frozen=True)
class Line:
    """One line of a sweep panel: ``series`` picks its colour, ``form`` its style."""

    series: str
    form: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]


@dataclass(frozen=True)
class SweepPanel:
    """One panel of :func:`draw_sweep`: its title and lines."""

    title: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class BarPanel:
    """One panel of :func:`draw_bars`: the value axis' label and, per series, one value
    per category (NaN: not measured)."""

    xlabel: str
    series: dict[str, tuple[float, ...]]


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _save(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # no "Software" text chunk (it names matplotlib's version): the same numbers, the same bytes
    figure.savefig(path, dpi=_DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    return path


def _short(value: float) -> str:
    """A value as a bar's label: three significant digits, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def draw_sweep(path: Path, panels: Sequence[SweepPanel], *, xlabel: str, ylabel: str) -> Path:
    """Panels side by side, log-log, sharing one legend below them; write a PNG to ``path``."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    series = list(dict.fromkeys(line.series for panel in panels for line in panel.lines))
    forms = list(dict.fromkeys(line.form for panel in panels for line in panel.lines))
    colour = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(series)}
    style = {name: _STYLES[i % len(_STYLES)] for i, name in enumerate(forms)}
    with rc_context({"font.size": 11}):
        figure = Figure(figsize=(_WIDTH_INCHES, 3.6), layout="constrained")
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        for ax, panel in zip(axes, panels):
            sizes = set()
            for line in panel.lines:
                points = [(x, y) for x, y in zip(line.xs, line.ys) if _finite(x) and _finite(y)]
                if not points:
                    continue
                sizes.update(x for x, _ in points)
                dash, marker = style[line.form]
                ax.plot(*zip(*points), dash, marker=marker, color=colour[line.series], markersize=5, lw=1.4)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(sorted(sizes))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(panel.title)
            ax.set_xlabel(xlabel)
            ax.grid(True, which="major", color="0.88", lw=0.6)
        axes[0].set_ylabel(ylabel)
        handles = [Line2D([], [], color=colour[name], lw=3, label=name) for name in series]
        handles += [Line2D([], [], color="0.3", ls=style[name][0], marker=style[name][1], label=name)
                    for name in forms]
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)
        return _save(figure, path)


def draw_bars(path: Path, categories: Sequence[str], panels: Sequence[BarPanel], *, title: str = "") -> Path:
    """Horizontal bars, one panel per measure, a bar per category and series, each
    labelled with its value; write a PNG to ``path``. Panels of one series each colour
    their bars by category (the axis names them); otherwise a colour per series, named
    in a legend."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = list(dict.fromkeys(name for panel in panels for name in panel.series))
    by_category = all(len(panel.series) == 1 for panel in panels)
    colour = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(names)}
    most = max(len(panel.series) for panel in panels)
    height = 1.2 + 0.32 * len(categories) * most
    with rc_context({"font.size": 11}):
        figure = Figure(figsize=(_WIDTH_INCHES, height), layout="constrained")
        axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
        for ax, panel in zip(axes, panels):
            top = max((v for values in panel.series.values() for v in values if _finite(v)), default=1.0)
            thickness = 0.8 / len(panel.series)
            for index, (name, values) in enumerate(panel.series.items()):
                for row, value in enumerate(values):
                    if not _finite(value):
                        continue  # not measured: no bar (a zero-length one would read as "nothing")
                    y = row - 0.4 + thickness * (index + 0.5)
                    shade = _COLOURS[row % len(_COLOURS)] if by_category else colour[name]
                    ax.barh(y, value, height=thickness * 0.9, color=shade)
                    ax.text(value + top * 0.01, y, _short(value), va="center", fontsize=9)
            ax.set_xlim(0, top * 1.22)
            ax.set_xlabel(panel.xlabel)
            ax.grid(True, axis="x", color="0.88", lw=0.6)
            ax.set_axisbelow(True)
        axes[0].set_yticks(range(len(categories)), list(categories))
        axes[0].invert_yaxis()  # the first category on top, as the table lists it
        if title:
            figure.suptitle(title)
        if not by_category:
            figure.legend(handles=[Patch(color=colour[name], label=name) for name in names],
                          loc="outside lower center", ncols=min(len(names), 4), frameon=False)
        return _save(figure, path)
