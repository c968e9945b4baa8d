"""The base of every table and figure: :class:`Experiment` (its presets, runs, claims,
plot and the page's defaults) and :class:`Parameter` (a parameter of its own).

A table module says *what* runs: its presets (one per scale), a short declaration of
its runs (``runs(preset, **params)`` yields :class:`~rkd.runs.Run` s naming which run
teaches which), its claims and its plot. :func:`rkd.runs.run_experiment` does
everything else, once for every table.
"""
from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from ..runs import Run, plan_table, resolve_runs, run_experiment
from ..runs.plan import with_cost

__all__ = ["Experiment", "Parameter"]


@dataclass(frozen=True)
class Parameter:
    """A parameter of an experiment besides the common ones (notebooks pass it by name)."""

    annotation: Any
    default: Any = None
    doc: str = ""


class Experiment:
    """A paper table or figure: presets, runs, claims and plot; the rest is shared.

    Subclasses set :attr:`name`, :attr:`title`, :attr:`presets` (scale -> preset) and
    :attr:`parameters` (their own parameters), and implement :meth:`runs`. The common
    parameters of every experiment are those of :meth:`run`.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    subtitle: ClassVar[str] = ""
    #: the page's opening paragraphs (Markdown)
    intro: ClassVar[str] = ""
    #: what the side-by-side table shows (Markdown)
    table_note: ClassVar[str] = ""
    #: the page's notebook, relative to the book root (for links), or None when it has no page of its own
    page: ClassVar[str | None]
    presets: ClassVar[Mapping[str, Any]]
    parameters: ClassVar[Mapping[str, Parameter]] = {}
    #: the metric the claims and side-by-side table compare
    metric: ClassVar[str]

    # ------------------------------------------------------------ what a subclass declares

    def runs(self, preset: Any, **params: Any) -> Iterable[Run]:  # pragma: no cover - abstract
        """The training runs of the experiment at ``preset`` (a value of :attr:`presets`),
        given its own ``params`` (:attr:`parameters`): :class:`~rkd.runs.Run` s in an order
        where a run comes after the runs that teach and start it. Every subclass implements it."""
        raise NotImplementedError

    def analyse(self, results, models) -> None:
        """Called with the trained models of the last seed when :attr:`keep_models` names
        runs (Figure 4 draws retrievals from them)."""

    #: runs whose trained models :meth:`analyse` needs
    keep_models: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------ the page (defaults)

    #: the key columns that identify a model across the paper's table and ours
    keys: ClassVar[tuple[str, ...]] = ("method",)

    def paper(self) -> pd.DataFrame | None:
        """The paper's numbers, long form: ``dataset`` (the paper's), :attr:`keys`, ``value``."""
        return None

    def keyed(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Our rows with the paper's key values (e.g. the teacher's row named as the paper names it)."""
        return rows

    def claims(self, rows: pd.DataFrame) -> list:
        """The paper's claims the experiment checks, as :class:`rkd.report.stats.Claim` s
        (none by default). ``rows``: our result rows as the page shows them (the paper's
        keys, :meth:`with_derived` rows included), for claims that depend on what ran."""
        return []

    def with_derived(self, frame: pd.DataFrame, value: str) -> pd.DataFrame:
        """``frame`` (ours, or the paper's) with the rows some claims compare that no run
        measures directly (Table 1's relative gains); ``value`` names the number column."""
        return frame

    def plot(self, rows: pd.DataFrame):
        """The page's figure of our ``rows`` (after :meth:`keyed`) beside the paper's
        numbers: a matplotlib figure, or None (the default) for an experiment without one."""
        return None

    def figure(self, results):
        """The page's figure: :meth:`plot` of our rows (a figure drawn from the models overrides it)."""
        return self.plot(self.keyed(results.rows))

    def order(self, results) -> list[tuple] | None:
        """The row order of the side-by-side table (None: as they come)."""
        return None

    def stands_in_for(self, results) -> dict[str, str]:
        """Our dataset (as shown) -> the paper's dataset whose role it plays."""
        return {d.display: d.paper_name for d in results.datasets}

    def describe_data(self, results) -> str:
        """The page box's sentence on the data of ``results``: each dataset as shown, with
        the paper's dataset it stands in for, then the notes of the scale's preset."""
        parts = [d.display + ("" if d.stands_in_for is None else f" for {d.stands_in_for}") for d in results.datasets]
        notes = self.preset(results.scale.split(" ")[0]).notes
        return "; ".join(parts) + (f". {notes}." if notes else ".")

    def samples(self, results):
        """One small mosaic of the stand-in images the page's models see: per stand-in
        dataset a row of panels, a few training images of each of a few classes (None at
        paper scale, whose data the reader has)."""
        from ..report.plots import sample_mosaic  # matplotlib: only when a page draws

        stand_ins = [d for d in results.datasets if d.stands_in_for is not None]
        return sample_mosaic(stand_ins) if stand_ins and not results.dry_run else None

    # ------------------------------------------------------------ shared

    def preset(self, scale: str) -> Any:
        """The preset of ``scale`` (a key of :attr:`presets`, e.g. ``"ci"``).

        Raises:
            ValueError: a scale the experiment has no preset for (the valid ones named).
        """
        if scale not in self.presets:
            raise ValueError(f"unknown scale {scale!r} for {self.title}; valid scales: {', '.join(self.presets)}")
        return self.presets[scale]

    def run(self, scale: str = "ci", data_root: str | None = None, device: str = "cpu",
            seeds: tuple[int, ...] | None = None, protocol: str | None = None, progress: bool = True,
            dry_run: bool = False, cache_dir: str | None = None, **params: Any):
        """Run the experiment; see :func:`rkd.runs.run_experiment`."""
        return run_experiment(self, scale=scale, data_root=data_root, device=device, seeds=seeds,
                              protocol=protocol, progress=progress, dry_run=dry_run, cache_dir=cache_dir, **params)

    def plan(self, scale: str = "ci", *, seeds: tuple[int, ...] | None = None, protocol: str | None = None,
             dry_run: bool = False, throughput: float | None = None, **params: Any) -> pd.DataFrame:
        """One row per training run of a full run at ``scale``: the protocol as a table, with
        the images each run processes (per seed and over all seeds) and, given a
        ``throughput`` (training images per second and GPU), its GPU-hours."""
        resolved = resolve_runs(self, scale=scale, protocol=protocol, dry_run=dry_run, **params)
        plan = plan_table(resolved.runs, seeds=resolved.seeds if seeds is None else tuple(seeds),
                          protocol=resolved.protocol)
        return with_cost(plan, throughput)

    def signature(self) -> inspect.Signature:
        """The parameters a notebook may set: :meth:`run`'s and :attr:`parameters`."""
        hints = typing.get_type_hints(self.run)
        common = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
                  for p in inspect.signature(self.run).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        own = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=p.annotation)
               for name, p in self.parameters.items()]
        return inspect.Signature(common + own)

    def __repr__(self) -> str:
        return f"<experiment {self.name}: {self.title}>"
