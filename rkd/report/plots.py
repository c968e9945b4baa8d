"""The figures of the pages, drawn once: the paper's panels beside ours, our points the
mean over seeds with the standard deviation as error bars, readable at page width."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["metric_by_size", "gain_bars", "grouped_bars", "generations_plot", "recall_at_k_plot", "sample_mosaic",
           "seed_errors", "training_curves"]

WIDTH = 11.0  # inches: the page width of the book at 100 dpi


def seed_errors(rows: pd.DataFrame, by: Sequence[str], metric: str) -> pd.DataFrame:
    """Mean and standard deviation of ``metric`` over seeds, per ``by``."""
    grouped = rows.groupby(list(by), sort=False)[metric]
    return grouped.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else 0.0).reset_index()


def _figure(panels: int, height: float = 3.8):
    import matplotlib.pyplot as plt

    columns = min(panels, 4)
    rows = -(-panels // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, height * rows), squeeze=False)
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:panels])


def metric_by_size(paper: pd.DataFrame, rows: pd.DataFrame, *, metric: str, methods: Sequence[str], teacher: str,
                   ylabel: str):
    """``metric`` against the student's embedding size, one panel per dataset (the
    paper's, then ours with error bars over seeds); solid lines with L2
    normalisation, dashed without; the teacher a dotted line."""
    import matplotlib.ticker as ticker

    panels = [("paper", d, f.rename(columns={"value": metric}), False) for d, f in paper.groupby("dataset", sort=False)]
    panels += [(f"ours ({rows['scale'].iloc[0]}, {rows['seed'].nunique()} seeds)", d, f, True)
               for d, f in rows.groupby("dataset", sort=False)]
    fig, axes = _figure(len(panels))
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    for ax, (source, dataset, frame, ours) in zip(axes, panels):
        students = frame[frame["method"].isin(methods)]
        stats = seed_errors(students, ["method", "l2_normalize", "embedding_dim"], metric)
        for (method, l2), line in stats.groupby(["method", "l2_normalize"], sort=False):
            line = line.sort_values("embedding_dim")
            ax.errorbar(line["embedding_dim"], line["mean"], yerr=line["std"] if ours else None, marker="o", ms=3,
                        capsize=2, color=colours.get(method, "k"), linestyle="-" if l2 == "yes" else "--",
                        label=method + ("" if l2 == "yes" else " (no L2)"))
        top = frame.loc[frame["method"] == teacher, metric]
        if len(top):
            ax.axhline(float(top.mean()), color="k", linewidth=1, linestyle=":", label="teacher")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(stats["embedding_dim"].unique()))
        ax.get_xaxis().set_major_formatter(ticker.ScalarFormatter())
        ax.set_title(f"{dataset}\n{source}", fontsize=10)
        ax.set_xlabel("student embedding size")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def gain_bars(paper: pd.DataFrame | None, rows: pd.DataFrame, *, metric: str, baseline: dict, label: str,
              categories: Sequence[str], category: str = "method", colours: dict | None = None):
    """Each category's gain over ``baseline`` (points), one panel per dataset: the paper's
    (single numbers) then ours, with error bars of the paired gain over seeds."""
    panels = []
    if paper is not None:
        panels += [("paper", d, f.rename(columns={"value": metric}), False) for d, f in paper.groupby("dataset",
                                                                                                   sort=False)]
    panels += [(f"ours ({rows['scale'].iloc[0]}, {rows['seed'].nunique()} seeds)", d, f, True)
               for d, f in rows.groupby("dataset", sort=False)]
    fig, axes = _figure(len(panels), height=0.28 * len(categories) + 1.6)
    for ax, (source, dataset, frame, ours) in zip(axes, panels):
        base = frame
        for key, value in baseline.items():
            base = base[base[key] == value]
        seeds = "seed" in frame.columns and ours
        means, errors = [], []
        for name in categories:
            own = frame[frame[category] == name]
            if own.empty or base.empty:
                means.append(float("nan"))
                errors.append(0.0)
                continue
            if seeds:
                paired = own[["seed", metric]].merge(base[["seed", metric]], on="seed", suffixes=("", "_base"))
                diff = paired[metric] - paired[f"{metric}_base"]
                means.append(float(diff.mean()))
                errors.append(float(diff.std(ddof=1)) if len(diff) > 1 else 0.0)
            else:
                means.append(float(own[metric].mean() - base[metric].mean()))
                errors.append(0.0)
        positions = range(len(categories))
        ax.barh(list(positions), means, xerr=errors if seeds else None, capsize=2,
                color=[(colours or {}).get(c, "C0") for c in categories])
        ax.axvline(0, color="k", linewidth=0.8)
        ax.set_yticks(list(positions), list(categories), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{dataset}\n{source}", fontsize=10)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def grouped_bars(frame: pd.DataFrame, *, x: str, group: str, metric: str, ylabel: str, title: str, ax=None):
    """Bars of ``metric`` per ``x`` value, one colour per ``group``, mean ± std over seeds."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(WIDTH / 2, 3.6))
    stats = seed_errors(frame, [x, group], metric)
    xs = list(dict.fromkeys(stats[x]))
    groups = list(dict.fromkeys(stats[group]))
    width = 0.8 / max(1, len(groups))
    for i, name in enumerate(groups):
        part = stats[stats[group] == name].set_index(x).reindex(xs)
        positions = np.arange(len(xs)) + (i - (len(groups) - 1) / 2) * width
        ax.bar(positions, part["mean"], width=width, yerr=part["std"], capsize=2, color=f"C{i}", label=str(name))
    ax.set_xticks(range(len(xs)), [str(v) for v in xs], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def generations_plot(paper: pd.DataFrame, rows: pd.DataFrame, *, metric: str):
    """``metric`` per generation (0: the teacher), one panel per dataset: the paper's,
    then ours with error bars over seeds."""
    panels = [("paper", d, f.rename(columns={"value": metric}), False) for d, f in paper.groupby("dataset", sort=False)]
    panels += [(f"ours ({rows['scale'].iloc[0]}, {rows['seed'].nunique()} seeds)", d, f, True)
               for d, f in rows.groupby("dataset", sort=False)]
    fig, axes = _figure(len(panels), height=3.2)
    for ax, (source, dataset, frame, ours) in zip(axes, panels):
        stats = seed_errors(frame, ["generation"], metric).sort_values("generation")
        ax.errorbar(stats["generation"], stats["mean"], yerr=stats["std"] if ours else None, marker="o", capsize=3)
        ax.set_xticks(stats["generation"].tolist(), ["teacher" if g == 0 else str(g) for g in stats["generation"]])
        ax.set_title(f"{dataset}\n{source}", fontsize=10)
        ax.set_xlabel("generation")
        ax.set_ylabel("Recall@1 (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def recall_at_k_plot(paper: pd.DataFrame, rows: pd.DataFrame, *, method: str):
    """Recall@K curves of the students of ``method``: the paper's panels, then ours with
    error bars over seeds; one line per backbone and size."""
    panels = [("paper", d, f[f["method"] == method], False) for d, f in paper.groupby("dataset", sort=False)]
    ks = sorted(int(c.removeprefix("recall_at_")) for c in rows.columns if c.startswith("recall_at_"))
    long = rows[rows["method"] == method].melt(
        id_vars=["dataset", "backbone", "embedding_dim", "seed"],
        value_vars=[f"recall_at_{k}" for k in ks], var_name="k", value_name="recall").dropna(subset=["recall"])
    long["k"] = long["k"].str.removeprefix("recall_at_").astype(int)
    panels += [(f"ours ({rows['scale'].iloc[0]}, {rows['seed'].nunique()} seeds)", d, f, True)
               for d, f in long.groupby("dataset", sort=False)]
    fig, axes = _figure(len(panels), height=3.4)
    for ax, (source, dataset, frame, ours) in zip(axes, panels):
        stats = seed_errors(frame, ["backbone", "embedding_dim", "k"], "recall")
        for (backbone, dim), line in stats.groupby(["backbone", "embedding_dim"], sort=False):
            line = line.sort_values("k")
            ax.errorbar(line["k"], line["mean"], yerr=line["std"] if ours else None, marker="o", ms=3, capsize=2,
                        label=f"{backbone}-{int(dim)}")
        ax.set_xscale("log")
        ax.set_title(f"{dataset}\n{source}", fontsize=10)
        ax.set_xlabel("K")
        ax.set_ylabel("Recall@K (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sample_mosaic(datasets, *, classes: int = 5, per_class: int = 8) -> list[tuple[str, bytes, int]]:
    """For each dataset spec: a caption, a grey PNG mosaic (and its width) of the first ``per_class``
    training images of its first ``classes`` classes (rows: classes), at the images' own
    resolution: a few kilobytes each, where a matplotlib grid of such noisy images weighs
    hundreds."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from ..data.splits import load_split

    mosaics = []
    for spec in datasets:
        dataset = load_split(spec, None, "train", train=False)
        targets = torch.as_tensor(dataset.targets)
        rows = []
        for label in torch.unique(targets)[:classes].tolist():
            picks = torch.nonzero(targets == label).flatten()[:per_class].tolist()
            tiles = [np.asarray(dataset[i][0], dtype=np.float32).squeeze() for i in picks]
            tiles = [(t - t.min()) / max(float(t.max() - t.min()), 1e-6) for t in tiles]  # shown, not scored
            tiles += [np.zeros_like(tiles[0])] * (per_class - len(tiles))
            rows.append(np.concatenate([np.pad(t, 1, constant_values=1.0) for t in tiles], axis=1))
        pixels = (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
        mosaics.append((f"{spec.display}, standing in for {spec.stands_in_for}: {per_class} training images of "
                        f"each of its first {classes} classes", buffer.getvalue(), pixels.shape[1]))
    return mosaics


def _first_metric(history: list[dict[str, Any]]) -> tuple[str, list[tuple[int, float]]]:
    """The first metric of a run's evaluations along training (Recall@1, top-1, few-shot's
    first way's accuracy) as ``(name, [(step, value)])``."""
    for entry in history:
        for name, value in entry.items():
            if name == "step":
                continue
            if isinstance(value, dict):  # few-shot: {"5-way": {"accuracy": ..., "ci95": ...}}
                return f"{name} accuracy", [(h["step"], h[name]["accuracy"]) for h in history if name in h]
            return name, [(h["step"], h[name]) for h in history if name in h]
    return "", []


def training_curves(runs: Mapping[str, Any], *, panel_height: float = 2.4):
    """One small panel per trained run (title: its key; a
    :class:`~rkd.runs.training.TrainedRun`): each weighted loss term (thin) and their total
    (black) against the step, from the run's stored loss curve (means over stretches of
    steps), on a log scale when every value is positive; its evaluations during training,
    if any, as dots on a right-hand axis. ``None`` when there is no run with a curve."""
    runs = {title: trained for title, trained in runs.items() if trained.losses}
    if not runs:
        return None
    fig, axes = _figure(len(runs), height=panel_height)
    for ax, (title, trained) in zip(axes, runs.items()):
        steps = trained.losses["step"]
        terms = [name for name in trained.losses if name not in ("step", "total")]
        for name in terms if len(terms) > 1 else ():
            ax.plot(steps, trained.losses[name], linewidth=0.8, label=name)
        if "total" in trained.losses:
            total_label = "total" if len(terms) != 1 else f"{terms[0]} (the total)"  # one term is its own total
            ax.plot(steps, trained.losses["total"], color="black", linewidth=1.0, label=total_label)
        if all(v > 0 for name in terms + ["total"] for v in trained.losses.get(name, ())):
            ax.set_yscale("log")
        metric, points = _first_metric(trained.history)
        if points:
            right = ax.twinx()
            right.plot([p[0] for p in points], [p[1] for p in points], "o", color="tab:red", markersize=3)
            right.set_ylabel(metric, color="tab:red", fontsize=8)
            right.tick_params(axis="y", labelsize=7, colors="tab:red")
        ax.set_title(title, fontsize=8)
        ax.tick_params(which="both", labelsize=7)  # log axes label minor ticks too
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper right", frameon=False)
    columns = min(len(runs), 4)  # _figure's grid
    for ax in axes[(len(axes) - 1) // columns * columns:]:  # the last row
        ax.set_xlabel("step", fontsize=8)
    fig.tight_layout()
    return fig
