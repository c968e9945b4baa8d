"""The package's reference pages, generated from the package when the book is built.

Each page of ``book/api/`` holds a line ``% rkd-generated: reference rkd.losses``; the rkd
Sphinx extension replaces it by :func:`reference_markdown` of that module: the module's
docstring, a table of its public names (its ``__all__``, in that order) with the first
sentence of each one's documentation, and an entry per name that Sphinx's autodoc renders
from its docstring (signature, parameters, the class's methods). A name added to
``__all__`` is on the page at the next build; nothing is listed by hand.

Module-level data (a registry, a table of constants) has no docstring of its own: its
documentation is the ``#:`` comment above its assignment in the module that defines it.
Autodoc reads such comments only in the module it documents, which for a name a package
re-exports is the package's ``__init__``, so this module finds the comment and writes the
entry itself. :func:`undocumented` lists the public names that have no documentation, and
the public methods and properties of the exported classes that have none (autodoc, with
``:members:`` alone and no inherited docstrings, leaves those off the page silently); a
test of ``make test`` fails on any.

A docstring may name a part of the package that the reference does not document on its
own (a submodule such as ``rkd.train.loader``, a helper outside ``__all__``): such a
cross-reference links to the page of the package that holds it, or is shown as plain
code where no page covers it (``rkd.runs``, ``rkd.report``); see :func:`internal_page`.
A reference to anything that does not exist stays unresolved, which ``-n`` makes a
build error.

``python -m rkd.book.reference`` lists the undocumented names of every module of
:data:`REFERENCE_MODULES` (and exits 1 when there is one).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import inspect
import pkgutil
import re
import textwrap
from collections.abc import Sequence
from types import ModuleType

__all__ = ["REFERENCE_MODULES", "ReferenceError", "public_names", "documentation", "undocumented",
           "undocumented_members", "reference_markdown", "internal_page", "page_of"]

#: the modules the book's reference documents, one page each (``book/api/<last part>.md``)
REFERENCE_MODULES = ("rkd.losses", "rkd.methods", "rkd.distill", "rkd.train", "rkd.metrics", "rkd.data",
                     "rkd.models", "rkd.experiments")
#: a value this short, on one line, is shown in its data entry
_SHORT_VALUE = 80


def page_of(module_name: str) -> str:
    """The document of ``module_name``'s reference page, e.g. ``book/api/losses``."""
    return "book/api/" + module_name.rsplit(".", 1)[-1]


class ReferenceError(ValueError):
    """A module the reference cannot document: not importable, or without ``__all__``."""


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ReferenceError(f"the reference cannot import {name}: {error}") from error


def public_names(module: ModuleType) -> list[str]:
    """The module's ``__all__``: what the reference documents."""
    names = getattr(module, "__all__", None)
    if names is None:
        raise ReferenceError(f"{module.__name__} has no __all__: list its public names there, so the reference "
                             f"knows what to document")
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise ReferenceError(f"{module.__name__}.__all__ names what the module does not define: {missing}")
    return list(names)


def _kind(obj: object) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj) and (inspect.isroutine(obj) or hasattr(obj, "__wrapped__")):
        return "function"
    return "data"


def _submodules(name: str) -> list[str]:
    """The modules inside package ``name`` (none for a plain module), entry points
    (``__main__``, which runs when imported) left out."""
    module = importlib.import_module(name)
    if not hasattr(module, "__path__"):
        return []
    return [info.name for info in pkgutil.walk_packages(module.__path__, name + ".")
            if not info.name.endswith(".__main__")]


def _data_comment(module: ModuleType, name: str) -> str | None:
    """The ``#:`` comment (or the string after it) of the data ``name`` re-exported by
    ``module``, read from the module, or the submodule, that assigns it."""
    from sphinx.pycode import ModuleAnalyzer, PycodeError

    obj = getattr(module, name)
    for candidate in [module.__name__, *_submodules(module.__name__)]:
        try:  # the source first, so that only a module that has such a comment is imported
            analyzer = ModuleAnalyzer.for_module(candidate)
            analyzer.analyze()
        except PycodeError:
            continue
        comment = analyzer.attr_docs.get(("", name))
        if comment and "".join(comment).strip() and getattr(importlib.import_module(candidate), name, None) is obj:
            return "\n".join(comment).strip()
    return None


def documentation(module: ModuleType, name: str) -> str | None:
    """What the reference shows for ``module.name``: its docstring (a class's or a
    function's own, not one it inherits from a base it shares with unrelated objects),
    or for data its ``#:`` comment; None when it has none."""
    obj = getattr(module, name)
    if _kind(obj) == "data":
        return _data_comment(module, name)
    doc = inspect.getdoc(obj)
    if inspect.isclass(obj) and doc is not None and (
            obj.__doc__ is None  # inherited from a base class: says nothing about this one
            or (dataclasses.is_dataclass(obj) and doc.startswith(obj.__name__ + "("))):  # @dataclass's own
        return None
    return doc.strip() if doc and doc.strip() else None


def _member_docstring(member: object) -> str | None | bool:
    """The docstring of a class member autodoc documents (a method, a static or class
    method, a property), None when it has none, False for anything else (a class attribute,
    a dataclass field's default): autodoc shows those only with a ``#:`` comment."""
    if isinstance(member, (staticmethod, classmethod)):
        return member.__func__.__doc__
    if inspect.isfunction(member) or isinstance(member, (property, functools.cached_property)):
        return member.__doc__
    return False


def undocumented_members(cls: type) -> list[str]:
    """The public methods and properties ``cls`` defines itself (not the ones it inherits,
    from ``nn.Module`` say) that have no docstring of their own, as ``Class.member``.

    The book documents a class with ``:members:`` and neither ``:undoc-members:`` nor
    inherited docstrings (``autodoc_inherit_docstrings: false``): such a member, ``forward``
    overriding ``nn.Module.forward`` included, would be missing from its page without a
    word. ``extra_repr`` (the module's printed form) is left out."""
    fields = getattr(cls, "__dataclass_fields__", {})  # a field's default (a function, say) is no method
    missing = []
    for name, member in vars(cls).items():
        if name.startswith("_") or name == "extra_repr" or name in fields:
            continue
        doc = _member_docstring(member)
        if doc is not False and not (doc and doc.strip()):
            missing.append(f"{cls.__name__}.{name}")
    return missing


def undocumented(module_name: str) -> list[str]:
    """The public names of ``module_name`` that have no documentation, and the public
    methods and properties of its classes that have none (:func:`undocumented_members`)."""
    module = _module(module_name)
    missing = []
    for name in public_names(module):
        if documentation(module, name) is None:
            missing.append(name)
        if inspect.isclass(getattr(module, name)):
            missing += undocumented_members(getattr(module, name))
    return missing


def _first_sentence(doc: str) -> str:
    """The first sentence of the first paragraph, where no inline markup is left open (a
    full stop followed by a lower-case word or a number, as in "eq. 7", ends none)."""
    paragraph = " ".join(doc.split("\n\n", 1)[0].split())
    for match in re.finditer(r"\.(\s+(?![a-z0-9])|$)", paragraph):
        sentence = paragraph[:match.start() + 1]
        if sentence.count("`") % 2 == 0 and sentence.count("(") == sentence.count(")") \
                and sentence.count("*") % 2 == 0:
            return sentence
    return paragraph


def _entry(module: ModuleType, name: str) -> list[str]:
    obj = getattr(module, name)
    kind = _kind(obj)
    if kind in ("class", "exception"):
        inherits = [base for base in obj.__bases__ if base is not object]
        return [f".. auto{kind}:: {name}", "   :members:", *(["   :show-inheritance:"] if inherits else []), ""]
    if kind == "function":
        return [f".. autofunction:: {name}", ""]
    if kind == "module":
        return [f".. py:data:: {name}", "", textwrap.indent(f"The module :mod:`{obj.__name__}`.", "   "), ""]
    lines = [f".. py:data:: {name}"]
    value = repr(obj)
    if len(value) <= _SHORT_VALUE and "\n" not in value and not value.startswith("<"):
        lines.append(f"   :value: {value}")
    comment = _data_comment(module, name) or ""
    return lines + ["", textwrap.indent(comment, "   "), ""]


def reference_markdown(module_name: str) -> str:
    """The body of the reference page of ``module_name`` (MyST, its reStructuredText in an
    ``eval-rst`` block): the module's docstring, a table of its public names, an entry each."""
    module = _module(module_name)
    names = public_names(module)
    rows = []
    for name in names:
        summary = _first_sentence(documentation(module, name) or "")
        rows += [f"   * - :py:obj:`~{module_name}.{name}`", f"     - {summary}"]
    lines = [
        "```{eval-rst}",
        f".. automodule:: {module_name}",
        "",
        ".. rubric:: Public names",
        "",
        ".. list-table::",
        "   :class: rkd-reference-names",
        "",
        *rows,
        "",
    ]
    for name in names:
        lines += _entry(module, name)
    return "\n".join(lines).rstrip() + "\n```\n"


def _exists(dotted: str) -> bool:
    """Whether ``dotted`` names a module of the package, or an object of the package
    inside one (not one a module of the package imports from elsewhere, like ``Tensor``)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for depth, attribute in enumerate(parts[cut:], start=cut + 1):
            if hasattr(obj, attribute):
                obj = getattr(obj, attribute)
            else:  # a dataclass field or annotated attribute, without a class-level value
                return depth == len(parts) and attribute in getattr(obj, "__annotations__", {})
        home = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)
        return not isinstance(home, str) or home.split(".")[0] == "rkd"
    return False


def internal_page(target: str, module: str | None = None, cls: str | None = None) -> tuple[str | None, str] | None:
    """Where a cross-reference to a part of the package that the reference does not
    document itself (a submodule, a helper outside ``__all__``) should lead: ``(module,
    full name)``, with the module of :data:`REFERENCE_MODULES` whose page covers it, or
    None for a part no page covers (``rkd.runs``, say). ``target`` is taken as written,
    then relative to the ``module`` and ``cls`` it was written in and to that package's
    submodules. None when it names nothing in the package."""
    candidates = [target]
    if module and module.startswith("rkd"):
        candidates += [f"{module}.{cls}.{target}"] if cls else []
        candidates.append(f"{module}.{target}")
        candidates += [f"{sub}.{target}" for sub in _submodules(module)]
    for dotted in candidates:
        if dotted.split(".")[0] == "rkd" and _exists(dotted):
            owner = next((m for m in REFERENCE_MODULES if dotted == m or dotted.startswith(m + ".")), None)
            return owner, dotted
    return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="List the public names the book's reference cannot document.")
    parser.add_argument("modules", nargs="*", default=list(REFERENCE_MODULES))
    args = parser.parse_args(argv)
    missing = {name: undocumented(name) for name in args.modules}
    for module_name, names in missing.items():
        print(f"{module_name}: " + (", ".join(names) if names else "every public name documented"))
    raise SystemExit(1 if any(missing.values()) else 0)


if __name__ == "__main__":
    main()
