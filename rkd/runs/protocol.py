"""The two protocols every experiment can follow: the authors' code, which produced the
printed numbers, and the paper's text, where the two differ (the Fidelity page gives
each difference, with the file of the authors' code it comes from).

A protocol is data: loss-term options applied to every run that uses the term, and the
schedule of FitNet's hint stage. Under both, FitNet's two stages are two runs (the
paper: "we first initialize a model with FitNet loss, and then fine-tune the model"),
and a class-balanced batch of 128 with 5 images per class holds 25 classes and 3 images
of a 26th (the authors' sampler; it also satisfies both of the paper's sentences). The preset names its default
(``"authors_code"``: it produced the numbers we compare with); the ``protocol``
parameter of every notebook overrides it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ..methods import get_method
from ..registry import Registry
from ..train import TrainConfig
from .spec import Run

__all__ = ["Protocol", "PROTOCOLS", "get_protocol"]


@dataclass(frozen=True)
class Protocol:
    """How runs train under one reading of the paper.

    ``term_options``: loss term -> options, merged into every run whose method uses the
    term. ``hint_schedule``: the schedule of FitNet's hint stage in metric learning, from
    the run's own (the authors' code has a FitNet script for metric learning only; in
    classification and few-shot learning the hint stage keeps the run's schedule).
    """

    name: str
    summary: str
    term_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hint_schedule: Callable[[TrainConfig], TrainConfig] = lambda train: train

    def apply(self, run: Run) -> Run:
        """``run`` with this protocol's term options (a run's own options win)."""
        if not run.trains:
            return run
        method = get_method(run.method, task=run.task)
        merged = {term: dict(options) for term, options in run.term_options}
        for term, options in self.term_options.items():
            if term in method.term_names:
                merged[term] = {**options, **merged.get(term, {})}
        return replace(run, term_options=tuple((t, tuple(o.items())) for t, o in merged.items()))

    def split(self, run: Run) -> tuple[Run, ...]:
        """``run``, or, for FitNet, its hint stage and the fine-tune as two runs, each with its
        own optimiser and schedule, the second starting from the first's model."""
        if not run.trains or run.stage is not None:
            return (run,)
        method = get_method(run.method, task=run.task)
        if len(method.stages) != 2 or method.stages[0].name != "hint":
            return (run,)
        hint = replace(run, name=f"{run.name} (hint stage)", role="hint", stage=0,
                       train=self.hint_schedule(run.train) if run.task == "metric" else run.train
                       ).with_labels(method=f"{run.method} (hint stage)", stage="hint")
        rest = replace(run, stage=1, init=hint.name)
        return hint, rest


def _authors_hint_schedule(train: TrainConfig) -> TrainConfig:
    # run_distill_fitnet.py's defaults: the students' length and decay, at lr 1e-5
    return replace(train, lr=1e-5)


def _reading(name: str, summary: str, *, authors: bool, **extra: Any) -> Protocol:
    """A protocol: the two readings differ in the same loss-term options, set one way or the other."""
    return Protocol(name=name, summary=summary, term_options=MappingProxyType({
        "triplet": {"squared": not authors, "authors_numerics": authors},
        "fitnet": {"learn_regressors": not authors},
    }), **extra)


#: protocol name -> :class:`Protocol`: ``"authors_code"`` (the default of the presets) and ``"paper_text"``
PROTOCOLS: Registry[Protocol] = Registry("protocol")
PROTOCOLS.register("authors_code", _reading(
    "authors_code", authors=True, hint_schedule=_authors_hint_schedule,
    summary=("as the authors' code ran it (lenscloth/RKD): the triplet loss on plain distances with the code's "
             "distance-weighted sampling numerics; FitNet's hint stage at lr 1e-5 with fixed random regressors")))
PROTOCOLS.register("paper_text", _reading(
    "paper_text", authors=False,
    summary=("as the paper's text describes it: eq. 12's squared distances, distance-weighted sampling as Wu et "
             "al. describe it; FitNet's regressors learned (eq. 3), its hint stage on the students' schedule")))


def get_protocol(name: str) -> Protocol:
    """The protocol registered as ``name`` in :data:`PROTOCOLS`; an unknown name raises
    :class:`rkd.registry.UnknownNameError` listing the valid ones."""
    return PROTOCOLS.get(name)
