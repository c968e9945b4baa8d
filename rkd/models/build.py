"""The model registry and :func:`build_model`, the one way the package builds a network.

Every registered builder takes keyword-only options with type annotations.
:func:`build_model` checks the options against that signature before calling the
builder, so an unknown option, a missing one or one of the wrong type fails the same
way for every model: a ``TypeError`` that names the option and lists the valid ones.
Checks on values (a positive size, a known tap) are the builder's, and raise
``ValueError``.
"""
from __future__ import annotations

import inspect
import os
import types
import typing
from collections.abc import Callable

from torch import nn

from rkd.registry import Registry

__all__ = ["MODELS", "build_model", "model_names", "model_options"]

#: name -> builder; a builder takes keyword-only, annotated options and returns a
#: :class:`rkd.models.network.FeatureNetwork`.
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build_model(name: str, **options) -> nn.Module:
    """Build model ``name`` (see :func:`model_names`) with ``options``.

    The model follows the package's output contract: ``model(x)`` returns a dict with
    ``"embedding"`` [N, D], ``"logits"`` [N, C] for classifiers, and the feature taps
    asked for with ``taps=(...)`` [N, C, H, W]. It exposes ``.embedding_dim``,
    ``.tap_channels`` (every tap it can return) and ``.taps`` (the ones it returns).
    """
    import rkd.models  # noqa: F401  (registers every builder; a no-op once imported)

    builder = MODELS.get(name)
    check_options(name, builder, options)
    model = builder(**options)
    model.model_name = name
    return model


def model_names() -> list[str]:
    """The names :func:`build_model` accepts, sorted."""
    import rkd.models  # noqa: F401

    return MODELS.names()


def model_options(name: str) -> dict[str, object]:
    """The options of model ``name`` and their defaults (``inspect.Parameter.empty``
    for a required option)."""
    import rkd.models  # noqa: F401

    signature = inspect.signature(MODELS.get(name))
    return {p.name: p.default for p in signature.parameters.values()}


def check_options(name: str, builder: Callable, options: dict[str, object]) -> None:
    """Raise ``TypeError`` for an unknown, missing or ill-typed option of ``builder``."""
    parameters = inspect.signature(builder).parameters
    hints = typing.get_type_hints(builder)
    valid = ", ".join(parameters) or "(none)"
    for option, value in options.items():
        if option not in parameters:
            raise TypeError(f"model {name!r} has no option {option!r}; its options are: {valid}")
        expected = hints.get(option)
        if expected is not None and not _matches(value, expected):
            raise TypeError(
                f"model {name!r}: option {option!r} must be {_describe(expected)}, "
                f"got {type(value).__name__} {value!r}"
            )
    missing = [p.name for p in parameters.values() if p.default is inspect.Parameter.empty and p.name not in options]
    if missing:
        raise TypeError(f"model {name!r} needs option(s) {', '.join(map(repr, missing))}; its options are: {valid}")


def _matches(value: object, expected: object) -> bool:
    """Whether ``value`` fits the annotation ``expected`` (the few forms builders use)."""
    if expected is typing.Any:
        return True
    if expected is type(None) or expected is None:
        return value is None
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(expected))
    if origin is tuple:
        # A list is accepted where a tuple is asked for; a lone string is not a sequence
        # of names here (taps="block2" would otherwise become five one-letter taps).
        if not isinstance(value, (tuple, list)):
            return False
        args = typing.get_args(expected)
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(item, args[0]) for item in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        # bool is a subclass of int, but normalize=1 or embedding_dim=True is a slip
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is os.PathLike:
        return isinstance(value, os.PathLike)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # an annotation this checker does not understand is left to the builder


def _describe(expected: object) -> str:
    if expected is type(None) or expected is None:
        return "None"
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(expected))
    if origin is tuple:
        args = typing.get_args(expected)
        if len(args) == 2 and args[1] is Ellipsis:
            example = ", e.g. ('block2', 'block3')" if args[0] is str else ""
            return f"a tuple of {_plural(args[0])}{example}"
        return f"a tuple ({', '.join(_describe(a) for a in args)})"
    if expected is os.PathLike:
        return "a path"
    if isinstance(expected, type):
        return {"str": "a str", "int": "an int", "bool": "a bool (True/False)", "float": "a float"}.get(
            expected.__name__, expected.__name__
        )
    return str(expected)


def _plural(expected: object) -> str:
    names = {str: "str", int: "int", bool: "bool", float: "float"}
    return names.get(expected, _describe(expected))
