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

import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from ..registry import Registry
from ..runs.spec import Experiment

__all__ = ["get", "names", "EXPERIMENTS", "notebook_parameters", "ParameterError", "Experiment"]

#: name -> experiment ("table1" ... "table6", "figure3", "figure4")
EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def _register_all() -> None:
    from . import figure3, figure4, table1, table2, table3, table4, table5, table6

    for module in (table1, table2, table3, table4, table5, table6, figure3, figure4):
        experiment = module.EXPERIMENT
        if experiment.name not in EXPERIMENTS:
            EXPERIMENTS.register(experiment.name, experiment)


def get(name: str) -> Experiment:
    """The experiment of a paper table or figure: ``"table1"`` ... ``"table6"``,
    ``"figure3"``, ``"figure4"``."""
    _register_all()
    return EXPERIMENTS.get(name)


def names() -> list[str]:
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
    refused, listing the valid names. Values are checked against the annotations; lists
    are accepted where a tuple is expected (papermill passes YAML lists).
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
    if expected is None or expected is typing.Any or expected is inspect.Parameter.empty:
        return value
    is_union = isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union
    options = typing.get_args(expected) if is_union else (expected,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return value
        if origin is tuple and isinstance(value, (list, tuple)):
            item_type = (typing.get_args(option) or (object,))[0]
            if item_type is object or item_type is Ellipsis or all(_is_instance(v, item_type) for v in value):
                return tuple(value)
        elif origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif isinstance(origin, type) and origin is not tuple and _is_instance(value, origin):
            return value
    raise ParameterError(
        f"notebook parameter {name}={value!r} has type {type(value).__name__}; expected {_describe(expected)}"
    )


def _is_instance(value: Any, cls: type) -> bool:
    if cls is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, cls)


def _describe(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")
