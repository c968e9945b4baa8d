"""The book's performance page, generated from the benchmarks' own result files.

Each benchmark in ``benchmarks/`` writes ``benchmarks/results/<name>.json``::

    {"benchmark": "bench_losses", "command": "python benchmarks/bench_losses.py ...",
     "date": "2026-01-31", "machine": {"cpu": ..., "cores": ..., "gpu": ..., "torch": ...},
     "rows": [{...}, ...], "summary": {...}}

:func:`performance_markdown` prints each file as a section: what ran it, on which machine
and when; for a benchmark the page knows (:data:`rkd.book.performance_kinds.KINDS`), its
plots, drawn from the rows when the book is built (time and memory against the batch
size, bars of throughput), each captioned with the machine, date and command, then its
rows and summary under readable names; for any other benchmark, its rows as a table
(transposed when it has many fields, to fit the page) and its summary, exactly as the
file holds them. Nothing is retyped, rounded beyond display or filled in. A missing or
malformed file is reported, never papered over.

``python -m rkd.book.performance benchmarks/results [--figures DIR]`` prints the page.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rkd.book.markdown import MISSING, code, escape, table
from rkd.book.performance_kinds import KINDS, Kind, cell, label

__all__ = ["BenchmarkError", "FigureTarget", "read_results", "figure_markdown", "performance_markdown"]

_KEYS = {"benchmark": str, "command": str, "date": str, "machine": dict, "rows": list, "summary": dict}
_MACHINE_KEYS = ("cpu", "cores", "gpu", "torch")


class BenchmarkError(ValueError):
    """A result file that does not follow the schema of this module's docstring."""


def validate(result: Any, where: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise BenchmarkError(f"{where}: a benchmark result must be a JSON object, got {type(result).__name__}")
    for key, kind in _KEYS.items():
        if key not in result:
            raise BenchmarkError(f"{where}: no {key!r} (keys: {sorted(result)}); expected {sorted(_KEYS)}")
        if not isinstance(result[key], kind):
            raise BenchmarkError(f"{where}: {key!r} must be a JSON {kind.__name__}, got {result[key]!r}")
    missing = [key for key in _MACHINE_KEYS if key not in result["machine"]]
    if missing:
        raise BenchmarkError(f"{where}: 'machine' lacks {missing}; expected {list(_MACHINE_KEYS)}")
    for i, row in enumerate(result["rows"]):
        if not isinstance(row, dict):
            raise BenchmarkError(f"{where}: rows[{i}] must be a JSON object, got {row!r}")
    return result


def read_results(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``*.json`` of ``folder``, validated, sorted by benchmark name then date."""
    results = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise BenchmarkError(f"{path}: not valid JSON ({error})") from error
        results.append((path, validate(data, str(path))))
    return sorted(results, key=lambda item: (item[1]["benchmark"], item[1]["date"], item[0].name))


#: a rows table with more fields than this, and more fields than rows, is printed
#: transposed (one line per field), so that it fits the page's column
_WIDEST = 5


def _rows_table(rows: list[dict[str, Any]], name: Callable[[str], str] = escape) -> str:
    """The rows as a table, a column per field headed by ``name(field)`` (transposed when
    too wide for the column)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    if len(columns) > _WIDEST and len(columns) > len(rows):
        return _transposed_table(rows, columns, name)
    numeric = [all(isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool)
                   for row in rows if row.get(c) is not None) for c in columns]
    body = [[cell(row.get(column)) for column in columns] for row in rows]
    return table([name(c) for c in columns], body, ["r" if n else "l" for n in numeric])


def _transposed_table(rows: list[dict[str, Any]], columns: list[str], name: Callable[[str], str]) -> str:
    """One line per field, one column per row, headed by the first field that names each
    row apart (a string, different in every row), else by the row's number."""
    names = next((c for c in columns if all(isinstance(row.get(c), str) for row in rows)
                  and len({row[c] for row in rows}) == len(rows)), None)
    header = [name(names) if names else ""] + [escape(row[names]) if names else f"row {i + 1}"
                                               for i, row in enumerate(rows)]
    body = [[name(c)] + [cell(row.get(c)) for row in rows] for c in columns if c != names]
    return table(header, body, ["l"] + ["r"] * len(rows))


def _machine(result: dict[str, Any]) -> str:
    machine = result["machine"]
    return (f"CPU {escape(machine.get('cpu') or MISSING)} ({escape(machine.get('cores') or MISSING)} cores), "
            f"GPU {escape(machine.get('gpu') or 'none')}, torch {escape(machine.get('torch') or MISSING)}")


def _provenance(path: Path, result: dict[str, Any]) -> list[str]:
    return [
        f"Run {escape(result['date'])}. Machine: {_machine(result)}. "
        f"From {code('benchmarks/results/' + path.name)}, written by:",
        "",
        "```bash",
        result["command"],
        "```",
        "",
    ]


def _section(path: Path, result: dict[str, Any], heading: str) -> list[str]:
    """A benchmark the page has no kind for: its rows and summary as the file holds them."""
    lines = [f"{heading} {escape(result['benchmark'])}, {escape(result['date'][:10])}", "",
             *_provenance(path, result)]
    if result["rows"]:
        lines += [_rows_table(result["rows"]), ""]
    if result["summary"]:
        summary_rows = [[escape(key), cell(value)] for key, value in result["summary"].items()]
        lines += ["Summary:", "", table(["", "value"], summary_rows, ["l", "r"]), ""]
    return lines


def figure_markdown(uri: str, alt: str, caption: str) -> str:
    """A MyST figure: the image at ``uri`` (relative to the page), as wide as the text
    column, with its alt text and caption."""
    alt = " ".join(alt.split())
    return f"```{{figure}} {uri}\n:alt: {alt}\n:width: 100%\n\n{caption}\n```"


@dataclass(frozen=True)
class FigureTarget:
    """Where the page's plots go: ``folder`` to write them in, ``uri`` the same folder
    as the page refers to it."""

    folder: Path
    uri: str


def _figures(path: Path, result: dict[str, Any], kind: Kind, target: FigureTarget) -> list[str]:
    try:
        figures = kind.figures(result)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
        raise BenchmarkError(f"{path}: its rows do not fit the {result['benchmark']!r} plots ({error!r})") from error
    machine = result["machine"]
    where = (f"Measured on {escape(machine.get('cpu') or MISSING)} ({escape(machine.get('cores') or MISSING)} cores"
             f"{', ' + escape(machine['gpu']) if machine.get('gpu') else ''}), {escape(result['date'][:10])}, by "
             f"{code(result['command'])}.")
    lines = []
    for figure in figures:
        name = f"{path.stem}_{figure.name}.png"
        figure.draw(target.folder / name)
        lines += [figure_markdown(f"{target.uri}/{name}", figure.alt, f"{figure.caption} {where}"), ""]
    return lines


def _known_section(path: Path, result: dict[str, Any], kind: Kind, heading: str,
                   figures: FigureTarget | None) -> list[str]:
    """A benchmark the page knows: its plots, its table and its summary under readable names."""
    device = "GPU" if result["machine"].get("gpu") else "CPU"
    lines = [f"{heading} {escape(kind.title)} ({device}, {escape(result['date'][:10])})", "",
             *_provenance(path, result)]
    if figures is not None:
        lines += _figures(path, result, kind, figures)
    if result["rows"]:
        own = kind.table(result["rows"]) if kind.table is not None else None
        # the fields that name a row (text) first, then its numbers
        rows = [dict(sorted(row.items(), key=lambda item: not isinstance(item[1], str))) for row in result["rows"]]
        lines += [own if own is not None else _rows_table(rows, lambda field: escape(label(field))), ""]
    if result["summary"]:
        summary_rows = [[escape(label(key)), cell(value)] for key, value in result["summary"].items()]
        lines += ["In short:", "", table(["measured", "value"], summary_rows, ["l", "r"]), ""]
    return lines


def _order(item: tuple[Path, dict[str, Any]]) -> tuple:
    # the benchmarks the page knows first, in the order of KINDS; the others after, by name
    names = list(KINDS)
    benchmark = item[1]["benchmark"]
    return (names.index(benchmark) if benchmark in names else len(names), benchmark, item[1]["date"], item[0].name)


def performance_markdown(folder: Path, heading_level: int = 2, figures: FigureTarget | None = None) -> str:
    """The body of the performance page for the result files in ``folder``; with
    ``figures``, the plots of the benchmarks it knows are drawn there and shown."""
    results = read_results(folder) if Path(folder).is_dir() else []
    if not results:
        return (
            "No benchmark results yet: `benchmarks/results/` holds no `*.json` file. "
            "Each benchmark in `benchmarks/` writes its own there when it runs.\n"
        )
    lines: list[str] = []
    for path, result in sorted(results, key=_order):
        kind = KINDS.get(result["benchmark"])
        heading = "#" * heading_level
        lines += (_known_section(path, result, kind, heading, figures) if kind is not None
                  else _section(path, result, heading))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the performance page for a folder of benchmark results.")
    parser.add_argument("folder", type=Path, nargs="?", default=Path("benchmarks/results"))
    parser.add_argument("--figures", type=Path, default=None, help="draw the plots into this folder too")
    args = parser.parse_args(argv)
    target = FigureTarget(args.figures, str(args.figures)) if args.figures is not None else None
    print(performance_markdown(args.folder, figures=target), end="")


if __name__ == "__main__":
    main()
