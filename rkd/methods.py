"""Training methods as data: which loss terms, with which weights, in which stages.

A :class:`Method` is a sequence of :class:`Stage` s; each stage names loss terms (keys of
:data:`rkd.losses.terms.LOSS_TERMS`) with their weights. A stage trains as a run of its
own (:meth:`Method.only_stage`), each with its own optimiser and schedule, the next
starting from the previous one's model: :class:`rkd.distill.Distiller` takes one stage.
The tables below give, per task, every method of the paper with the weights of
protocol.md; :func:`get_method` picks one and applies weight overrides.

Choices the paper leaves open, made here:

- FitNet trains in two stages (paper, footnote 1: "we first initialize a model with
  FitNet loss, and then fine-tune the model"): hint training with the FitNet loss alone,
  then the task loss (plus RKD-DA in "FitNet+RKD-DA"), each stage a run of the full
  schedule (:mod:`rkd.runs.protocol` sets the hint stage's). Hints: blocks 2-4 and the
  final embedding in metric learning (section 4.1), blocks 2-4 in classification (4.2),
  the final embedding in few-shot (4.3).
- HKD's weight is 1 because :func:`rkd.losses.hkd` applies tau^2 = 16 itself: together
  they are the paper's lambda_HKD = 16 on the plain KL, as in the authors' code.
- Classification applies RKD to the L2-normalised pooled features, as the authors'
  classification code does (``normalize`` option of the rkd terms).
- Attention in few-shot uses the last block only ("block4"), the feature map whose
  flattening is the 4-conv network's final embedding (section 4.3 applies it "on the
  final embedding output"); elsewhere blocks 2, 3 and 4. On 28 x 28 inputs that map is
  1 x 1 and attention is undefined (the loss raises); pick earlier blocks there with
  ``method.with_term_options("attention", blocks=("block2", "block3"))``.
- RRD weight 1 (the RRD authors' setting), with cross-entropy in classification; in
  metric learning RRD, like RKD, runs without a task loss.
- "Baseline" is the task loss alone; "Triplet" and "Prototypical" are the same thing
  under the names of the paper's tables.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from rkd.losses.terms import LOSS_TERMS
from rkd.outputs import TAP_NAMES
from rkd.registry import Registry, UnknownNameError

__all__ = ["Stage", "Method", "METHODS", "TASKS", "get_method", "methods_for_task"]


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Stage:
    """One phase of training (a run of its own): ``terms`` maps loss-term names to weights."""

    name: str
    terms: Mapping[str, float]

    def __post_init__(self):
        if not self.terms:
            raise ValueError(f"stage {self.name!r} has no loss terms")
        object.__setattr__(self, "terms", _frozen({k: float(v) for k, v in self.terms.items()}))


@dataclass(frozen=True)
class Method:
    """A named training recipe: stages in order, plus construction options per term."""

    name: str
    stages: tuple[Stage, ...]
    term_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    task: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise ValueError(f"method {self.name!r} has no stages")
        unknown = sorted(set(self.term_options) - set(self.term_names))
        if unknown:
            raise ValueError(f"method {self.name!r} has options for terms it does not use: {unknown}")
        object.__setattr__(self, "term_options",
                           _frozen({k: _frozen(v) for k, v in self.term_options.items()}))

    @property
    def term_names(self) -> tuple[str, ...]:
        """Every term used by any stage, in order of first use."""
        names: dict[str, None] = {}
        for stage in self.stages:
            names.update(dict.fromkeys(stage.terms))
        return tuple(names)

    @property
    def needs_teacher(self) -> bool:
        """Whether a term of any stage reads the teacher's outputs (its class's
        ``needs_teacher``): a run of the method then needs a teacher, else it trains alone."""
        return any(LOSS_TERMS.get(term).needs_teacher for term in self.term_names)

    def options_for(self, term: str) -> dict[str, Any]:
        """A new dict of the construction options of ``term`` (the keyword arguments its
        :data:`rkd.losses.LOSS_TERMS` class's ``build`` receives); empty for a term without any, or
        one the method does not use."""
        return dict(self.term_options.get(term, {}))

    def with_term_options(self, term: str, **options: Any) -> Method:
        """A copy with ``options`` merged into the construction options of ``term``."""
        if term not in self.term_names:
            raise ValueError(f"method {self.name!r} has no term {term!r}; its terms: {list(self.term_names)}")
        merged = {k: dict(v) for k, v in self.term_options.items()}
        merged.setdefault(term, {}).update(options)
        return replace(self, term_options=merged)

    def only_stage(self, index: int) -> Method:
        """The method reduced to its stage ``index``, as the run that trains that stage
        uses it (named e.g. ``"FitNet (hint stage)"``; options only for its terms)."""
        if not 0 <= index < len(self.stages):
            raise ValueError(f"method {self.name!r} has stages 0..{len(self.stages) - 1} "
                             f"({[s.name for s in self.stages]}), got {index}")
        stage = self.stages[index]
        return replace(self, name=f"{self.name} ({stage.name} stage)", stages=(stage,),
                       term_options={k: v for k, v in self.term_options.items() if k in stage.terms})


#: the paper's three tasks: metric learning (section 4.1), classification (4.2), few-shot learning (4.3)
TASKS = ("metric", "classification", "fewshot")


def _single(terms: Mapping[str, float], **options: Mapping[str, Any]) -> dict:
    return {"stages": (("train", terms),), "options": options}


def _fitnet(hints: tuple[str, ...], then: Mapping[str, float], **options: Mapping[str, Any]) -> dict:
    return {
        "stages": (("hint", {"fitnet": 1.0}), ("task", then)),
        "options": {"fitnet": {"hints": hints}, **options},
    }


_NORMALIZED_RKD = {"rkd_distance": {"normalize": True}, "rkd_angle": {"normalize": True}}

# Section 4.1: metric learning. RKD uses no task loss; the baselines keep triplet.
_METRIC = {
    "Baseline": _single({"triplet": 1}),
    "Triplet": _single({"triplet": 1}),
    "FitNet": _fitnet((*TAP_NAMES, "embedding"), {"triplet": 1}),
    "Attention": _single({"triplet": 1, "attention": 50}),
    "DarkRank": _single({"triplet": 1, "darkrank": 1}),
    "RKD-D": _single({"rkd_distance": 1}),
    "RKD-A": _single({"rkd_angle": 2}),
    "RKD-DA": _single({"rkd_distance": 1, "rkd_angle": 2}),
    "RRD": _single({"rrd": 1}),
}

# Section 4.2 / Table 4: classification. Cross-entropy always.
_CE = {"cross_entropy": 1}
_RKD_DA_CLS = {"rkd_distance": 25, "rkd_angle": 50}
_CLASSIFICATION = {
    "Baseline": _single(_CE),
    "RKD-D": _single({**_CE, "rkd_distance": 25}, rkd_distance=_NORMALIZED_RKD["rkd_distance"]),
    "RKD-A": _single({**_CE, "rkd_angle": 50}, rkd_angle=_NORMALIZED_RKD["rkd_angle"]),
    "RKD-DA": _single({**_CE, **_RKD_DA_CLS}, **_NORMALIZED_RKD),
    "HKD": _single({**_CE, "hkd": 1}),
    "FitNet": _fitnet(TAP_NAMES, _CE),
    "Attention": _single({**_CE, "attention": 50}),
    "RRD": _single({**_CE, "rrd": 1}),
    "HKD+RKD-DA": _single({**_CE, "hkd": 1, **_RKD_DA_CLS}, **_NORMALIZED_RKD),
    "FitNet+RKD-DA": _fitnet(TAP_NAMES, {**_CE, **_RKD_DA_CLS}, **_NORMALIZED_RKD),
    "Attention+RKD-DA": _single({**_CE, "attention": 50, **_RKD_DA_CLS}, **_NORMALIZED_RKD),
    "RRD+HKD": _single({**_CE, "rrd": 1, "hkd": 1}),
}

# Section 4.3 / Tables 5-6: few-shot. Prototypical loss always; RKD-DA weights halved.
_PROTO = {"prototypical": 1}
_FEWSHOT = {
    "Baseline": _single(_PROTO),
    "Prototypical": _single(_PROTO),
    "RKD-D": _single({**_PROTO, "rkd_distance": 50}),
    "RKD-A": _single({**_PROTO, "rkd_angle": 100}),
    "RKD-DA": _single({**_PROTO, "rkd_distance": 25, "rkd_angle": 50}),
    "Attention": _single({**_PROTO, "attention": 10}, attention={"blocks": ("block4",)}),
    "FitNet": _fitnet(("embedding",), _PROTO),
}

_TABLES = {"metric": _METRIC, "classification": _CLASSIFICATION, "fewshot": _FEWSHOT}


def _build(name: str, task: str, spec: dict) -> Method:
    stages = tuple(Stage(stage_name, terms) for stage_name, terms in spec["stages"])
    return Method(name=name, stages=stages, term_options=spec["options"], task=task)


#: method name -> {task: Method}, for the tasks the method applies to: the one registry of methods
METHODS: Registry = Registry("method")
for _name in dict.fromkeys(n for table in _TABLES.values() for n in table):
    METHODS.register(_name, MappingProxyType(
        {task: _build(_name, task, table[_name]) for task, table in _TABLES.items() if _name in table}))


def methods_for_task(task: str) -> list[str]:
    """Names of the methods defined for ``task``."""
    _check_task(task)
    return sorted(name for name in METHODS.names() if task in METHODS.get(name))


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise UnknownNameError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")


def get_method(name: str, task: str = "metric", **weight_overrides: float) -> Method:
    """The method ``name`` for ``task`` ("metric", "classification" or "fewshot").

    ``weight_overrides`` replace a term's weight in every stage that uses it, e.g.
    ``get_method("RKD-DA", "classification", rkd_angle=25)``. A weight of 0 drops the term.

    Raises:
        UnknownNameError: unknown method or task, or a method not defined for this task
            (a KeyError and a ValueError); the message lists the valid names.
        ValueError: an override for a term the method does not use.
    """
    _check_task(task)
    if name not in METHODS:
        raise UnknownNameError(
            f"unknown method {name!r}; valid methods for {task!r}: {', '.join(methods_for_task(task))}"
        )
    by_task = METHODS.get(name)
    if task not in by_task:
        raise UnknownNameError(
            f"method {name!r} is not defined for task {task!r} (it is for: {', '.join(sorted(by_task))}); "
            f"valid methods for {task!r}: {', '.join(methods_for_task(task))}"
        )
    method = by_task[task]
    if not weight_overrides:
        return method
    unknown = sorted(set(weight_overrides) - set(method.term_names))
    if unknown:
        raise ValueError(
            f"weight overrides {unknown} name terms that method {name!r} ({task}) does not use; "
            f"its terms: {list(method.term_names)}"
        )
    stages = []
    for stage in method.stages:
        terms = {term: float(weight_overrides.get(term, weight)) for term, weight in stage.terms.items()}
        terms = {term: weight for term, weight in terms.items() if weight != 0.0}
        if not terms:
            raise ValueError(f"weight overrides leave stage {stage.name!r} of {name!r} with no loss terms")
        stages.append(Stage(stage.name, terms))
    used = {term for stage in stages for term in stage.terms}
    options = {term: opts for term, opts in method.term_options.items() if term in used}
    return replace(method, stages=tuple(stages), term_options=options)
