"""The paper's tables and figures as experiments: ``rkd.experiments.get("table1")``.

Each experiment (one module per table or figure) holds its presets, its runs, its
claims and its plot; :mod:`~rkd.runs.runner` runs any of them::

    experiment = rkd.experiments.get("table1")
    experiment.plan(scale="paper")                 # the protocol, one row per training run
    results = experiment.run(scale="ci", seeds=[0, 1, 2])

Notebooks call :func:`notebook_parameters` right after their ``parameters`` cell, so a
misspelt or ill-typed papermill parameter stops the notebook with a clear error instead
of being silently ignored.
"""
from __future__ import annotations

from .. import pin as _pin  # noqa: F401  (first, before torch loads: the experiments run pinned)

import inspect
import json
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..registry import Registry
from .base import Experiment

__all__ = ["get", "names", "stored", "EXPERIMENTS", "notebook_parameters", "ParameterError", "Experiment"]

#: name -> experiment ("table1" ... "table6", "figure3", "figure4")
EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def _register_all() -> None:
    from . import figure3, figure4, table1, table2, table3, table4, table5, table6, tuning

    for module in (table1, table2, table3, table4, table5, table6, figure3, figure4, tuning):
        experiment = module.EXPERIMENT
        if experiment.name not in EXPERIMENTS:
            EXPERIMENTS.register(experiment.name, experiment)


def get(name: str) -> Experiment:
    """The experiment of a paper table or figure: ``"table1"`` ... ``"table6"``,
    ``"figure3"``, ``"figure4"``; or ``"tuning"``, the baselines tuned at the stand-in scale."""
    _register_all()
    return EXPERIMENTS.get(name)


def names() -> list[str]:
    """The names of the experiments with a page of their own (the paper's tables and
    figures), sorted; :func:`get` also knows ``"tuning"``."""
    _register_all()
    return [name for name in EXPERIMENTS.names() if EXPERIMENTS.get(name).page is not None]


def stored() -> list[str]:
    """Every experiment whose numbers the results store keeps: the pages' and the tuning's."""
    _register_all()
    return EXPERIMENTS.names()


# names IPython itself puts in a kernel's namespace
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_PARAMETER_TYPES = (str, int, float, bool, list, tuple, dict, type(None))


class ParameterError(TypeError):
    """A notebook parameter that the experiment does not take, or of the wrong type."""


def notebook_parameters(namespace: Mapping[str, Any], experiment: Experiment | str) -> dict[str, Any]:
    """The keyword arguments for ``experiment.run`` found among a notebook's globals, checked.

    Every plain value (str, number, bool, list, dict, None) in ``namespace`` that does
    not start with ``_`` is taken as a parameter: papermill injects parameters as such
    globals, so a name the experiment does not take is a misspelt parameter and is
    refused, listing the valid names. Values are checked against the annotations (lists
    are accepted where a tuple is expected: papermill passes YAML lists).
    """
    if isinstance(experiment, str):
        experiment = get(experiment)
    signature = experiment.signature()
    given = {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_") and name not in _KERNEL_NAMES and isinstance(value, _PARAMETER_TYPES)
    }
    unknown = sorted(set(given) - set(signature.parameters))
    if unknown:
        raise ParameterError(
            f"unknown notebook parameter(s) {unknown}; {experiment.title} takes: {', '.join(signature.parameters)}"
        )
    hints = {name: p.annotation for name, p in signature.parameters.items()}
    return {name: _coerce(name, value, hints.get(name)) for name, value in given.items()}


def _coerce(name: str, value: Any, expected: Any) -> Any:
    """``value`` checked against ``expected`` as pydantic's strict JSON mode reads it: a
    papermill value is a YAML/JSON literal, so a list stands for a tuple and an int for a
    float, but a string is never a number, nor a bool an int."""
    if expected is None or expected is typing.Any or expected is inspect.Parameter.empty:
        return value
    try:
        return TypeAdapter(expected).validate_json(json.dumps(value), strict=True)
    except ValidationError:
        raise ParameterError(f"notebook parameter {name}={value!r} has type {type(value).__name__}; expected "
                             f"{getattr(expected, '__name__', None) or str(expected).replace('typing.', '')}") from None
