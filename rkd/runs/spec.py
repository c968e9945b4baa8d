"""The protocol as data: a training run (:class:`Run`) with its batches and evaluation,
and the base of every table and figure (:class:`Experiment`).

A table module says *what* runs: its presets (one per scale), a short declaration of
its runs (``runs(preset, **params)`` yields :class:`Run` s naming which run teaches
which), its claims and its plot. :func:`rkd.runs.runner.run_experiment` does
everything else, once for every table.
"""
from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pandas as pd

from ..data.splits import DataSpec
from ..models.spec import ModelSpec
from ..train import TrainConfig

__all__ = ["Batches", "Evaluation", "Run", "Experiment", "ROLES", "Parameter"]

#: what a run is for; shown in plans and results
ROLES = ("pretrain", "teacher", "initial", "student", "generation", "hint")


@dataclass(frozen=True)
class Batches:
    """How training batches are drawn (see :mod:`rkd.data.samplers`).

    ``kind``: ``"m_per_class"`` (``size`` images, ``m`` per class; metric learning),
    ``"random"`` (``size`` images, one shuffle per epoch; classification) or
    ``"episodes"`` (``way`` classes x (``shot`` + ``query``) images; few-shot).
    ``per_epoch``: batches per epoch when the sampler's natural epoch is not used.
    ``options``: further keyword arguments of the sampler (e.g. ``small_classes``).
    """

    kind: str
    size: int = 0
    m: int = 0
    way: int = 0
    shot: int = 0
    query: int = 0
    per_epoch: int | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> str:
        if self.kind == "m_per_class":
            classes, extra = divmod(self.size, self.m)
            text = f"{classes} classes x {self.m} images" + (f" + {extra}" if extra else "")
        elif self.kind == "episodes":
            text = f"{self.way}-way {self.shot}-shot, {self.query} queries per class"
        else:
            text = f"{self.size} random images"
        text += f", {self.per_epoch} per epoch" if self.per_epoch else ""
        return text + "".join(f", {k}={v}" for k, v in self.options if k != "fill_with_partial_class")


@dataclass(frozen=True)
class Evaluation:
    """What is measured on a trained model, on the test split of its data (and of
    ``domains``, other datasets it is only evaluated on).

    ``kind``: ``"recall"`` (Recall@``ks``), ``"top1"`` or ``"episodes"`` (prototypical
    accuracy on ``episodes`` seeded test episodes of every way in ``ways`` at ``shot``,
    ``query`` queries per class), or ``"none"``. ``every``: also evaluate every that
    many steps, for the "best on test, as the authors selected" column (0: only after
    the last step; never used for our own verdicts).
    """

    kind: str
    ks: tuple[int, ...] = ()
    ways: tuple[int, ...] = ()
    shot: int = 0
    query: int = 0
    episodes: int = 0
    batch_size: int = 256
    every: int = 0
    domains: tuple[DataSpec, ...] = ()
    #: the split it is measured on (the pretraining corpus has a held-out "val" split)
    split: str = "test"

    @property
    def metrics(self) -> tuple[str, ...]:
        if self.kind == "recall":
            return tuple(f"recall_at_{k}" for k in self.ks)
        if self.kind == "top1":
            return ("top1",)
        if self.kind == "episodes":
            return ("accuracy",)
        return ()


@dataclass(frozen=True)
class Run:
    """One training run (or, with ``train=None``, one model only evaluated), as data.

    ``teacher`` and ``init`` name earlier runs *of the same dataset and seed*: the
    first's model teaches this one, the second's weights start it (a pretrained
    trunk, read through the network's ``weights_path`` as ImageNet weights are at
    paper scale; or a whole earlier model, e.g. FitNet's hint stage). ``labels`` are
    extra columns of its result rows (embedding size, generation, ...). ``seed``: a
    fixed seed for runs that play fixed assets (the pretrained trunk plays ImageNet
    weights, which do not change with the experiment's seed).
    """

    name: str
    role: str
    task: str
    data: DataSpec
    network: ModelSpec
    evaluation: Evaluation
    method: str | None = None
    train: TrainConfig | None = None
    batches: Batches | None = None
    model_options: tuple[tuple[str, Any], ...] = ()
    term_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    teacher: str | None = None
    init: str | None = None
    labels: tuple[tuple[str, Any], ...] = ()
    seed: int | None = None
    #: train only this stage of a multi-stage method, as a run of its own (FitNet's
    #: hint stage and the stage after it, as the authors ran them)
    stage: int | None = None
    #: the runs ``teacher`` and ``init`` may name: those of the same group (default: the
    #: training dataset; a pretraining run on another corpus joins its dataset's group)
    group: str | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"run {self.name!r}: unknown role {self.role!r}; valid: {', '.join(ROLES)}")
        if (self.train is None) != (self.method is None) or (self.train is None) != (self.batches is None):
            raise ValueError(f"run {self.name!r}: give method, train and batches together (or none of them, "
                             f"for a model that is only evaluated)")

    @property
    def scope(self) -> str:
        return self.group or self.data.name

    @property
    def trains(self) -> bool:
        return self.train is not None

    def label(self, key: str, default: Any = None) -> Any:
        return dict(self.labels).get(key, default)


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
    #: the notebook of the page, relative to the book root (for links)
    page: ClassVar[str]
    presets: ClassVar[Mapping[str, Any]]
    parameters: ClassVar[Mapping[str, Parameter]] = {}
    #: the metric the claims and side-by-side table compare
    metric: ClassVar[str]

    # ------------------------------------------------------------ what a subclass declares

    def runs(self, preset: Any, **params: Any) -> Iterable[Run]:  # pragma: no cover - abstract
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
        return []

    def plot(self, rows: pd.DataFrame):
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
        parts = [d.display + ("" if d.stands_in_for is None else f" for {d.stands_in_for}") for d in results.datasets]
        notes = self.preset(results.scale.split(" ")[0]).notes
        return "; ".join(parts) + (f". {notes}." if notes else ".")

    def samples(self, results):
        """One small mosaic of the stand-in images the page's models see: per stand-in
        dataset a row of panels, a few training images of each of a few classes (None at
        paper scale, whose data the reader has)."""
        from ..report.plots import sample_mosaic

        stand_ins = [d for d in results.datasets if d.stands_in_for is not None]
        return sample_mosaic(stand_ins) if stand_ins and not results.dry_run else None

    # ------------------------------------------------------------ shared

    def preset(self, scale: str) -> Any:
        if scale not in self.presets:
            raise ValueError(f"unknown scale {scale!r} for {self.title}; valid scales: {', '.join(self.presets)}")
        return self.presets[scale]

    def run(self, scale: str = "ci", data_root: str | None = None, device: str = "cpu",
            seeds: tuple[int, ...] | None = None, protocol: str | None = None, progress: bool = True,
            dry_run: bool = False, cache_dir: str | None = None, **params: Any):
        """Run the experiment; see :func:`rkd.runs.runner.run_experiment`."""
        from .runner import run_experiment

        return run_experiment(self, scale=scale, data_root=data_root, device=device, seeds=seeds,
                              protocol=protocol, progress=progress, dry_run=dry_run, cache_dir=cache_dir, **params)

    def plan(self, scale: str = "ci", *, seeds: tuple[int, ...] | None = None, protocol: str | None = None,
             dry_run: bool = False, **params: Any) -> pd.DataFrame:
        """One row per training run of a full run at ``scale``: the protocol as a table."""
        from .runner import plan_table, resolve_runs

        resolved = resolve_runs(self, scale=scale, protocol=protocol, dry_run=dry_run, **params)
        return plan_table(resolved.runs, seeds=resolved.seeds if seeds is None else tuple(seeds),
                          protocol=resolved.protocol)

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


def with_labels(run: Run, **labels: Any) -> Run:
    return replace(run, labels=tuple({**dict(run.labels), **labels}.items()))


def frozen_options(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items())

