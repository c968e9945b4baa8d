"""What the performance page knows about each benchmark: its title, its plots, its table
and readable names for its fields (:data:`KINDS`, keyed by the ``benchmark`` field of a
result file).

Every figure is computed from the file's rows when the book is built: the plots, the
ratios their alt text states, the notes under them (a point not measured, and why). A
kind whose plot needs fields a file lacks (the benchmark changed) draws no plot from
that file; a benchmark with no kind here is shown as a plain table
(:mod:`rkd.book.performance`).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rkd.book.markdown import MISSING, code, escape, table
from rkd.book.performance_figures import BarPanel, Line, SweepPanel, draw_bars, draw_sweep

__all__ = ["Figure", "Kind", "KINDS", "cell", "label"]

Row = dict[str, Any]


@dataclass(frozen=True)
class Figure:
    """One plot of a result file: ``name`` ends its PNG's file name, ``draw(path)`` writes it."""

    name: str
    alt: str
    caption: str
    draw: Callable[[Path], Any]


@dataclass(frozen=True)
class Kind:
    """How the page shows one benchmark: a title, the plots of a result file (none when the
    file lacks what they need) and, optionally, a table of its own (else its rows under
    readable names)."""

    title: str
    figures: Callable[[dict[str, Any]], list[Figure]]
    table: Callable[[list[Row]], str | None] | None = None


# ------------------------------------------------------------------------ cells, names

def cell(value: Any) -> str:
    """A cell as the file holds it: integers whole, floats to 4 significant digits at
    least (never in exponent form below 1e6), NaN as "not measured", a list of numbers
    as a comma-separated list, anything else as compact JSON."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "not measured"  # how the benchmarks write a figure they did not take
        if math.isinf(value):
            return str(value)
        magnitude = abs(value)
        if magnitude >= 1e6 or (0 < magnitude < 1e-3):
            return f"{value:.4g}"
        decimals = max(0, 3 - int(math.floor(math.log10(magnitude)))) if magnitude else 0
        return f"{value:,.{decimals}f}"
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return ", ".join(cell(v) for v in value)
    return escape(json.dumps(value, sort_keys=True))


#: field -> what it is, for the fields the benchmarks write whose names say it badly
LABELS = {
    "images_per_s": "images/s",
    "workers": "loader workers",
    "num_workers": "loader workers",
    "best_workers": "best number of loader workers",
    "ratio_workers_main_images_per_s": "images/s, decoding with the best number of workers ÷ in the main process",
    "ratio_cache_main_images_per_s": "images/s, the decoded cache with the best number of workers ÷ decoding "
                                     "in the main process",
    "native_ms": "native (ms per step)",
    "pinned_ms": "pinned (ms per step)",
    "ratio": "pinned ÷ native",
    "ratio_to_native": "÷ native",
    "step_ms": "ms per step",
    "form": "search",
    "extra_memory_mib": "extra memory (MiB)",
    "identical": "the recall values are identical (1: yes)",
    "ratio_ours_faiss_seconds": "time, ours ÷ faiss",
    "ratio_ours_authors_images_per_s": "images/s, our step ÷ the authors' loop",
    "loss_relative_difference": "first loss, relative difference between the two loops",
    "channels_last": "channels-last memory format",
    "check_every": "NaN/inf check every (steps)",
    "warmup_steps": "warm-up steps",
}
_UNITS = (("_per_s", "/s"), ("_mib", " (MiB)"), ("_ms", " (ms)"), ("_s", " (s)"))


def label(field: str) -> str:
    """A field's name as a reader reads it: :data:`LABELS`, else ``recall_at_10`` as
    Recall@10, a unit suffix in brackets (``cache_build_s``: cache build (s)) and spaces
    for underscores; a name that already has spaces is kept."""
    if field in LABELS:
        return LABELS[field]
    if " " in field:
        return field
    recall = re.fullmatch(r"recall_at_(\d+)", field)
    if recall:
        return f"Recall@{recall.group(1)}"
    for suffix, unit in _UNITS:
        if field.endswith(suffix) and len(field) > len(suffix):
            return field[: -len(suffix)].replace("_", " ") + unit
    return field.replace("_", " ")


# ------------------------------------------------------------------------ helpers

def _has(rows: list[Row], *fields: str) -> bool:
    return bool(rows) and all(field in row for row in rows for field in fields)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _finite(value: Any) -> bool:
    return math.isfinite(_number(value))


def _span(ratios: list[float]) -> str:
    """``1.20 to 3.96`` (or one value), for the alt text."""
    ratios = sorted(r for r in ratios if math.isfinite(r))
    if not ratios:
        return MISSING
    low, high = f"{ratios[0]:.3g}", f"{ratios[-1]:.3g}"
    return low if low == high else f"{low} to {high}"


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ------------------------------------------------------------------------ the losses

#: the two forms of a loss the sweep measures: the field prefix and how the page names it
_FORMS = (("ours", "ours"), ("authors", "the authors' form"))


def _width(row: Row) -> str:
    d_s, d_t = row.get("D_s"), row.get("D_t")
    return f"D = {d_s:,}" if d_s == d_t else f"D_s = {d_s:,}, D_t = {d_t:,}"


def _lines(rows: list[Row], field: str) -> tuple[Line, ...]:
    """Per embedding width and form, the values of ``field`` ({form} in it) against N."""
    lines = []
    for width in dict.fromkeys(_width(row) for row in rows):
        sweep = sorted((row for row in rows if _width(row) == width), key=lambda row: row["N"])
        for prefix, form in _FORMS:
            lines.append(Line(width, form, tuple(_number(r["N"]) for r in sweep),
                              tuple(_number(r.get(field.format(form=prefix))) for r in sweep)))
    return tuple(lines)


def _ratios(rows: list[Row], field: str) -> list[float]:
    return [_number(r.get(field.format(form="authors"))) / _number(r.get(field.format(form="ours")))
            for r in rows if _finite(r.get(field.format(form="ours"))) and _number(r.get(field.format(form="ours")))]


def _with_options(text: str) -> str:
    """``text`` escaped, its command-line options (``--authors-max-gib``) as code, which
    the page would otherwise typeset with a dash."""
    return re.sub(r"(?<!\S)--[\w\\-]+", lambda option: code(option.group(0).replace("\\", "")), escape(text))


def _not_run(rows: list[Row]) -> str:
    notes = [f"{row['loss']} at N = {row['N']:,}, {_width(row)}: {row['note']}" for row in rows if row.get("note")]
    return (" Not plotted: " + "; ".join(_with_options(note) for note in notes) + ".") if notes else ""


def _loss_figures(result: dict[str, Any]) -> list[Figure]:
    rows = result["rows"]
    if not _has(rows, "loss", "N", "D_s", "D_t", "ours_ms", "authors_ms"):
        return []
    losses = list(dict.fromkeys(row["loss"] for row in rows))
    widths = list(dict.fromkeys(_width(row) for row in rows))
    by_loss = {loss: [row for row in rows if row["loss"] == loss] for loss in losses}
    time_panels = [SweepPanel(loss, _lines(by_loss[loss], "{form}_ms")) for loss in losses]
    ratios = "; ".join(f"{_span(_ratios(by_loss[loss], '{form}_ms'))} times as long as ours for {loss}"
                       for loss in losses)
    figures = [Figure(
        "time",
        f"Log-log line plots, one panel per loss ({_listing(losses)}), of the time of one forward and backward call "
        f"in milliseconds against the batch size N: ours as solid lines, the authors' form as dashed lines, a colour "
        f"per embedding width ({_listing(widths)}). The authors' form takes {ratios}.",
        "Time of one forward + backward call against the batch size N, log-log: ours (solid) and the authors' "
        "form (dashed), a colour per embedding width D." + _not_run(rows),
        lambda path: draw_sweep(path, time_panels, xlabel="batch size N", ylabel="forward + backward (ms)"))]
    ways = sorted({m.group(1) for row in rows for key in row for m in [re.fullmatch(r"ours_(\w+)_peak_mib", key)] if m},
                  key=lambda way: (way != "warm", way))
    measured = [(loss, way) for loss in losses for way in ways
                if any(_finite(row.get(f"{form}_{way}_peak_mib")) for row in by_loss[loss] for form, _ in _FORMS)]
    if measured:
        memory_panels = [SweepPanel(f"{loss}, {way}", _lines(by_loss[loss], f"{{form}}_{way}_peak_mib"))
                         for loss, way in measured]
        unmeasured = [loss for loss in losses if all(loss != measured_loss for measured_loss, _ in measured)]
        ratios = "; ".join(f"{_span(_ratios(by_loss[loss], f'{{form}}_{way}_peak_mib'))} times as much as ours for "
                           f"{loss} ({way})" for loss, way in measured)
        figures.append(Figure(
            "memory",
            f"Log-log line plots of the peak memory of one forward and backward call in MiB against the batch size N, "
            f"one panel per loss and way of measuring ({_listing([f'{loss} {way}' for loss, way in measured])}): "
            f"ours solid, the authors' form dashed, a colour per embedding width. The authors' form needs {ratios}.",
            "Peak memory of one forward + backward call (what the call adds to the process at its peak) against the "
            "batch size N, log-log: ours (solid) and the authors' form (dashed). Warm: after a first call on a small "
            "batch; cold: the process's first call (`benchmarks/README.md` says how it is measured). Sizes with no "
            "memory figure in the file (a form not run, a size not measured) are left out."
            + (f" No peak memory was measured for {_listing(unmeasured)} in this run." if unmeasured else ""),
            lambda path: draw_sweep(path, memory_panels, xlabel="batch size N", ylabel="peak memory (MiB)")))
    return figures


def _pair(row: Row, field: str) -> str:
    ours, authors = row.get(field.format(form="ours")), row.get(field.format(form="authors"))
    if not _finite(ours):
        return MISSING
    ratio = f" (×{_number(authors) / _number(ours):.3g})" if _finite(authors) and _number(ours) else ""
    return f"{cell(ours)} / {cell(authors) if _finite(authors) else MISSING}{ratio}"


def _loss_table(rows: list[Row]) -> str | None:
    """Time and peak memory, ours / the authors' form (the ratio), a line per size; the
    largest error against float64 under it."""
    if not _has(rows, "loss", "N", "D_s", "D_t", "ours_ms", "authors_ms"):
        return None
    ways = [way for way in ("warm", "cold") if any(_finite(row.get(f"ours_{way}_peak_mib")) for row in rows)]
    header = ["loss", "N", "D", "ms: ours / authors' (×)"] + [f"peak MiB, {way}: ours / authors' (×)" for way in ways]
    body = [[escape(row["loss"]), cell(row["N"]), escape(_width(row).removeprefix("D = ")), _pair(row, "{form}_ms")]
            + [_pair(row, f"{{form}}_{way}_peak_mib") for way in ways] for row in rows]
    lines = [table(header, body, ["l", "r", "r", "r"] + ["r"] * len(ways))]
    errors = []
    for what in ("loss", "grad"):
        worst = {form: max((_number(r.get(f"{prefix}_{what}_error")) for r in rows
                            if _finite(r.get(f"{prefix}_{what}_error"))), default=math.nan) for prefix, form in _FORMS}
        if any(math.isfinite(v) for v in worst.values()):
            errors.append(f"{'the loss' if what == 'loss' else 'its gradient'}: "
                          + ", ".join(f"{form} {v:.1e}" for form, v in worst.items() if math.isfinite(v)))
    if errors:
        lines.append(f"\nLargest relative error against a float64 reference over the sweep, {'; '.join(errors)}.")
    return "\n".join(lines)


# ------------------------------------------------------------------------ bar charts

def _bar_figure(name: str, categories: list[str], panels: list[BarPanel], alt: str, caption: str) -> Figure:
    return Figure(name, alt, caption, lambda path: draw_bars(path, categories, panels))


def _one_bar_chart(name: str, categories: list[str], label: str, series: dict[str, tuple[float, ...]], what: str,
                   facts: str, caption: str) -> list[Figure]:
    """A page's one horizontal bar chart of ``series`` (``label`` on its axis); its alt
    text says ``what`` it shows and the ``facts`` it holds."""
    return [_bar_figure(name, categories, [BarPanel(label, series)],
                        f"A horizontal bar chart of {what}. {facts}.", caption)]


def _values(rows: list[Row], field: str) -> tuple[float, ...]:
    return tuple(_number(row.get(field)) for row in rows)


def _sizes(rows: list[Row]) -> str:
    """The sizes the rows name (N, dim, ...), or nothing when they name none."""
    found = [f"{key} = {cell(rows[0][key])}" for key in ("N", "n", "dim", "D", "classes", "batch")
             if key in rows[0] and all(row.get(key) == rows[0][key] for row in rows)]
    return f" ({', '.join(found)})" if found else ""


def _recall_figures(result: dict[str, Any]) -> list[Figure]:
    rows = result["rows"]
    if not _has(rows, "form", "median_s", "extra_memory_mib"):
        return []
    forms = [str(row["form"]) for row in rows]
    facts = "; ".join(f"{form}: {_number(row['median_s']):.3g} s and {_number(row['extra_memory_mib']):,.0f} MiB"
                      for form, row in zip(forms, rows))
    return [_bar_figure(
        "time_memory", forms,
        [BarPanel("median time (s)", {"time": _values(rows, "median_s")}),
         BarPanel("extra memory (MiB)", {"memory": _values(rows, "extra_memory_mib")})],
        f"Two horizontal bar charts comparing {_listing(forms)} computing Recall@K: the median time in seconds and the "
        f"extra memory in MiB. {facts}.",
        f"Recall@K over the same embeddings{_sizes(rows)}, each one a query against all the others: median time "
        f"and the memory the search adds to the process.")]


def _train_step_figures(result: dict[str, Any]) -> list[Figure]:
    rows = result["rows"]
    if not _has(rows, "loop", "images_per_s"):
        return []
    names = [f"{row['loop']}" + (f" ({row['num_workers']} workers)" if "num_workers" in row else "") for row in rows]
    facts = "; ".join(f"{name}: {_number(row['images_per_s']):.3g} images/s" for name, row in zip(names, rows))
    return _one_bar_chart("images_per_s", names, "images/s (more is faster)",
                          {"images/s": _values(rows, "images_per_s")},
                          "the training throughput in images per second of each loop", facts,
                          f"Training throughput of one distillation step{_sizes(rows)}: our train step against the "
                          f"authors' loop.")


def _loader_figures(result: dict[str, Any]) -> list[Figure]:
    rows = result["rows"]
    if not _has(rows, "pipeline", "workers", "images_per_s"):
        return []
    workers = sorted({row["workers"] for row in rows})
    pipelines = list(dict.fromkeys(row["pipeline"] for row in rows))
    rate = {(row["pipeline"], row["workers"]): _number(row["images_per_s"]) for row in rows}
    series = {pipeline: tuple(rate.get((pipeline, w), math.nan) for w in workers) for pipeline in pipelines}
    categories = [f"{w} workers" if w != 1 else "1 worker" for w in workers]
    facts = "; ".join(f"{p}: " + ", ".join(f"{c} {v:,.0f}" for c, v in zip(categories, series[p]) if math.isfinite(v))
                      for p in pipelines)
    return _one_bar_chart("images_per_s", categories, "images/s (more is faster)", series,
                          f"the images per second the data loader delivers with 0 to {workers[-1]} worker processes, "
                          f"one bar per pipeline ({_listing(pipelines)})", facts,
                          "Images per second the training loader delivers, by number of worker processes (0: the "
                          "main process), for each pipeline.")


def _pin_figures(result: dict[str, Any]) -> list[Figure]:
    rows = result["rows"]
    if _has(rows, "setting", "step_ms"):
        categories = [str(row["setting"]) for row in rows]
        series = {"ms per step": _values(rows, "step_ms")}
    elif _has(rows, "step", "native_ms", "pinned_ms"):
        categories = [str(row["step"]) for row in rows]
        series = {"native": _values(rows, "native_ms"), "pinned": _values(rows, "pinned_ms")}
    else:
        return []
    facts = "; ".join(f"{c}: " + ", ".join(f"{name + ' ' if len(series) > 1 else ''}{values[i]:.3g} ms"
                                          for name, values in series.items()) for i, c in enumerate(categories))
    return _one_bar_chart("ms_per_step", categories, "ms per step (less is faster)", series,
                          "the time of one training step with and without the CPU pin", facts,
                          "Time of one stand-in training step with the CPU pin (`rkd.portable`, the same numbers on "
                          "every x86 CPU) and without it (native: the fastest kernels this CPU has).")


def _pin_table(rows: list[Row]) -> str | None:
    """A line per setting: its time per step, its ratio to native, the ATen kernels it
    ran and its parts in one cell (a column each would not fit the page)."""
    if not _has(rows, "setting", "step_ms"):
        return None
    parts = [key for key in rows[0] if key.endswith(" ms")]
    body = [[escape(row["setting"]), cell(row["step_ms"]), cell(row.get("ratio_to_native")),
             escape(row.get("capability", MISSING)),
             "; ".join(f"{escape(part.removesuffix(' ms'))} {cell(row.get(part))}" for part in parts) or MISSING]
            for row in rows]
    return table(["setting", "ms per step", "÷ native", "ATen kernels", "its parts, ms per step"], body,
                 ["l", "r", "r", "l", "l"])


def _stand_in_step_figures(result: dict[str, Any]) -> list[Figure]:
    rows = result["rows"]
    if not _has(rows, "part", "cpu_ms", "wall_ms"):
        return []
    categories = [str(row["part"]) for row in rows]
    series = {"CPU time": _values(rows, "cpu_ms"), "wall time": _values(rows, "wall_ms")}
    facts = "; ".join(f"{c}: {cpu:.3g} ms CPU" for c, cpu in zip(categories, series["CPU time"]) if math.isfinite(cpu))
    return _one_bar_chart("parts", categories, "ms per step", series,
                          "where the time of one distilled stand-in step goes, part by part, in CPU and wall-clock "
                          "milliseconds", facts,
                          "Where the time of one distilled stand-in step goes: each part of the step, the rest that "
                          "`fit` adds, and the whole step, in CPU time and wall-clock time per step.")


def _stand_in_step_table(rows: list[Row]) -> str | None:
    """A line per part: CPU time (the lowest and highest repeat) and its share, wall time and its share."""
    if not _has(rows, "part", "cpu_ms", "cpu_share", "wall_ms", "wall_share"):
        return None

    def spread(row: Row) -> str:
        low, high = row.get("cpu_min_ms"), row.get("cpu_max_ms")
        return f" ({cell(low)} to {cell(high)})" if _finite(low) and _finite(high) else ""

    body = [[escape(row["part"]), cell(row["cpu_ms"]) + spread(row), f"{_number(row['cpu_share']):.1%}",
             cell(row["wall_ms"]), f"{_number(row['wall_share']):.1%}"] for row in rows]
    return table(["part", "CPU ms per step (lowest to highest repeat)", "share", "wall ms per step", "share"],
                 body, ["l", "r", "r", "r", "r"])


#: benchmark name (the ``benchmark`` field of its file) -> how the page shows it
KINDS: dict[str, Kind] = {
    "losses": Kind("Relational losses: ours against the authors' form", _loss_figures, _loss_table),
    "recall": Kind("Recall@K: ours against faiss", _recall_figures),
    "train_step": Kind("The training step: ours against the authors' loop", _train_step_figures),
    "loader": Kind("The training data loader", _loader_figures),
    "pin": Kind("What the CPU pin costs", _pin_figures, _pin_table),
    "stand_in_step": Kind("Where the stand-in step's time goes", _stand_in_step_figures, _stand_in_step_table),
}
