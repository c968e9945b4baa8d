"""One module per paper table or figure: its presets (``ci``, ``paper``, ...) and ``run()``.

Notebooks call :func:`notebook_parameters` right after their ``parameters`` cell, so a
misspelt or ill-typed papermill parameter stops the notebook with a clear error instead
of being silently ignored.
"""
from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["notebook_parameters", "ParameterError", "summarize_claims"]

# names IPython itself puts in a kernel's namespace
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_PARAMETER_TYPES = (str, int, float, bool, list, tuple, dict, type(None))


class ParameterError(TypeError):
    """A notebook parameter that the experiment does not take, or of the wrong type."""


def notebook_parameters(namespace: Mapping[str, Any], run: Callable) -> dict[str, Any]:
    """The keyword arguments for ``run`` found among a notebook's globals, checked.

    Every plain value (str, number, bool, list, dict, None) in ``namespace`` that does
    not start with ``_`` is taken as a parameter: papermill injects parameters as such
    globals, so a name ``run`` does not accept is a misspelt parameter and is refused,
    listing the valid names. Values are checked against ``run``'s annotations; lists
    are accepted where a tuple is expected (papermill passes YAML lists).
    """
    signature = inspect.signature(run)
    hints = typing.get_type_hints(run)
    given = {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_") and name not in _KERNEL_NAMES and isinstance(value, _PARAMETER_TYPES)
    }
    unknown = sorted(set(given) - set(signature.parameters))
    if unknown:
        raise ParameterError(
            f"unknown notebook parameter(s) {unknown}; {run.__module__}.{run.__name__} takes: "
            f"{', '.join(signature.parameters)}"
        )
    params = {}
    for name, value in given.items():
        expected = hints.get(name)
        if expected is not None:
            value = _coerce(name, value, expected)
        params[name] = value
    return params


def _coerce(name: str, value: Any, expected: Any) -> Any:
    options = typing.get_args(expected) if isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union else (expected,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return value
        if origin is tuple and isinstance(value, (list, tuple)):
            item_type = (typing.get_args(option) or (object,))[0]
            if item_type is object or all(_is_instance(v, item_type) for v in value):
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


def summarize_claims(claims, scale: str | None = None) -> str:
    """A Markdown list saying, for each claim and each of *our* datasets, whether it
    held: fully ("4/4"), partly ("2/4") or not at all ("0/4"); with ``scale``, under a
    line naming the scale the numbers come from.

    ``claims`` is a claims table as the table modules return it: one row per claim,
    columns ``(source, dataset)`` holding "held/total" strings.
    """
    lines = []
    for claim, row in claims.iterrows():
        verdicts = []
        for (source, dataset), value in row.items():
            if source != "ours" or not isinstance(value, str) or not re.fullmatch(r"\d+/\d+", value):
                continue  # "n/a": the claim could not be checked on this dataset
            held, total = (int(v) for v in value.split("/"))
            word = "holds" if held == total else ("does not hold" if held == 0 else "holds only partly")
            verdicts.append(f"{word} on {dataset} ({value})")
        if verdicts:
            lines.append(f"- *{claim}*: " + "; ".join(verdicts) + ".")
    body = "\n".join(lines) if lines else "No claim could be checked on our numbers."
    return body if scale is None else f"On our numbers at `scale={scale!r}`:\n\n{body}"
