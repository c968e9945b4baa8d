"""The book's performance page, generated from the benchmarks' own result files.

Each benchmark in ``benchmarks/`` writes ``benchmarks/results/<name>.json``::

    {"benchmark": "bench_losses", "command": "python benchmarks/bench_losses.py ...",
     "date": "2026-01-31", "machine": {"cpu": ..., "cores": ..., "gpu": ..., "torch": ...},
     "rows": [{...}, ...], "summary": {...}}

:func:`performance_markdown` prints each file as a section: what ran it, on which machine
and when, its rows as a table (transposed when it has many fields, to fit the page) and
its summary, exactly as the file holds them (nothing is retyped, rounded beyond display
or filled in). A missing or malformed file is
reported, never papered over.

``python -m rkd.book.performance benchmarks/results`` prints the page.
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rkd.book.markdown import MISSING, code, escape, table

__all__ = ["BenchmarkError", "read_results", "performance_markdown"]

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


def _value(value: Any) -> str:
    """A cell as the file holds it: integers whole, floats to 4 significant digits at
    least (never in exponent form below 1e6), NaN as "not measured", a list of numbers
    as a comma-separated list, anything else as compact JSON."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "not measured"  # how the benchmarks write a figure they did not take
        if math.isinf(value):
            return str(value)
        magnitude = abs(value)
        if magnitude >= 1e6 or (0 < magnitude < 1e-3):
            return f"{value:.4g}"
        decimals = max(0, 3 - int(math.floor(math.log10(magnitude)))) if magnitude else 0
        return f"{value:,.{decimals}f}"
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return ", ".join(_value(v) for v in value)
    return escape(json.dumps(value, sort_keys=True))


#: a rows table with more fields than this, and more fields than rows, is printed
#: transposed (one line per field), so that it fits the page's column
_WIDEST = 5


def _rows_table(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    if len(columns) > _WIDEST and len(columns) > len(rows):
        return _transposed_table(rows, columns)
    numeric = [all(isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool)
                   for row in rows if row.get(c) is not None) for c in columns]
    body = [[_value(row.get(column)) for column in columns] for row in rows]
    return table([escape(c) for c in columns], body, ["r" if n else "l" for n in numeric])


def _transposed_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """One line per field, one column per row, headed by the first field that names each
    row apart (a string, different in every row), else by the row's number."""
    names = next((c for c in columns if all(isinstance(row.get(c), str) for row in rows)
                  and len({row[c] for row in rows}) == len(rows)), None)
    header = [escape(names or "")] + [escape(row[names]) if names else f"row {i + 1}" for i, row in enumerate(rows)]
    body = [[escape(c)] + [_value(row.get(c)) for row in rows] for c in columns if c != names]
    return table(header, body, ["l"] + ["r"] * len(rows))


def _section(path: Path, result: dict[str, Any], heading: str) -> list[str]:
    machine = result["machine"]
    gpu = machine.get("gpu") or "none"
    lines = [
        f"{heading} {escape(result['benchmark'])}, {escape(result['date'][:10])}",
        "",
        f"Run {escape(result['date'])}. Machine: CPU {escape(machine.get('cpu') or MISSING)} "
        f"({escape(machine.get('cores') or MISSING)} cores), "
        f"GPU {escape(gpu)}, torch {escape(machine.get('torch') or MISSING)}. "
        f"From {code('benchmarks/results/' + path.name)}, written by:",
        "",
        "```bash",
        result["command"],
        "```",
        "",
    ]
    if result["rows"]:
        lines += [_rows_table(result["rows"]), ""]
    if result["summary"]:
        summary_rows = [[escape(key), _value(value)] for key, value in result["summary"].items()]
        lines += ["Summary:", "", table(["", "value"], summary_rows, ["l", "r"]), ""]
    return lines


def performance_markdown(folder: Path, heading_level: int = 2) -> str:
    """The body of the performance page for the result files in ``folder``."""
    results = read_results(folder) if Path(folder).is_dir() else []
    if not results:
        return (
            "No benchmark results yet: `benchmarks/results/` holds no `*.json` file. "
            "Each benchmark in `benchmarks/` writes its own there when it runs.\n"
        )
    lines: list[str] = []
    for path, result in results:
        lines += _section(path, result, "#" * heading_level)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the performance page for a folder of benchmark results.")
    parser.add_argument("folder", type=Path, nargs="?", default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    print(performance_markdown(args.folder), end="")


if __name__ == "__main__":
    main()
