"""The book's summary of all tables, generated from the executed notebooks.

Each experiment notebook displays one output of MIME type :data:`SUMMARY_MIME` holding::

    {"experiment": "table1", "title": "Table 1: ...", "page": "notebooks/table1_metric_learning",
     "scale": "ci", "seeds": [0, 1, 2],
     "rows": [{"what": str, "paper": float|null, "ours_mean": float|null,
               "ours_std": float|null, "difference": float|null}],
     "claims": [{"claim": str, "verdict": one of rkd.report.stats.VERDICTS,
                 "interval": [lo, hi], "paper": str}]}

(:data:`SUMMARY_MIME` and :data:`VERDICTS` are those of :mod:`rkd.report`, which writes
the record: one definition, read here.)

:func:`summary_markdown` turns the notebooks of a book into one MyST page: a table of the
paper's numbers beside ours and a table of the claims' verdicts per experiment, each row
linking to the experiment's page. A notebook without such an output gets a line saying
so, never an invented row. The numbers are printed as the notebook computed them.

``python -m rkd.book.summary notebooks/*.ipynb`` prints the page.
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rkd.book.markdown import MISSING, code, escape, number, signed, table
from rkd.report.page import SUMMARY_MIME
from rkd.report.stats import VERDICTS

__all__ = [
    "SummaryError",
    "NotebookSummary",
    "read_summaries",
    "summary_markdown",
    "rrd_markdown",
]

_TOP_KEYS = {"experiment": str, "title": str, "page": str, "scale": str, "seeds": list, "rows": list,
             "claims": list}
_ROW_NUMBERS = ("paper", "ours_mean", "ours_std", "difference")


class SummaryError(ValueError):
    """A summary output that does not follow the schema of this module's docstring."""


@dataclass
class NotebookSummary:
    """The summaries one notebook carries (usually one; none when not yet re-executed)."""

    notebook: Path
    page: str  # the notebook's docname, e.g. "notebooks/table1_metric_learning"
    title: str  # the notebook's first heading (its page title)
    summaries: list[dict[str, Any]] = field(default_factory=list)


def _is_number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def validate(summary: Any, where: str) -> dict[str, Any]:
    """``summary`` checked against the schema; :class:`SummaryError` names what is wrong."""
    if not isinstance(summary, dict):
        raise SummaryError(f"{where}: the {SUMMARY_MIME} output must be a JSON object, got {type(summary).__name__}")
    for key, kind in _TOP_KEYS.items():
        if key not in summary:
            raise SummaryError(f"{where}: the {SUMMARY_MIME} output has no {key!r} (keys: {sorted(summary)})")
        if not isinstance(summary[key], kind):
            raise SummaryError(f"{where}: {key!r} must be a {kind.__name__}, got {summary[key]!r}")
    for i, row in enumerate(summary["rows"]):
        if not isinstance(row, dict) or not isinstance(row.get("what"), str):
            raise SummaryError(f"{where}: rows[{i}] must be an object with a string 'what', got {row!r}")
        for key in _ROW_NUMBERS:
            if not _is_number_or_null(row.get(key)):
                raise SummaryError(f"{where}: rows[{i}][{key!r}] must be a number or null, got {row.get(key)!r}")
    for i, claim in enumerate(summary["claims"]):
        if not isinstance(claim, dict) or not isinstance(claim.get("claim"), str):
            raise SummaryError(f"{where}: claims[{i}] must be an object with a string 'claim', got {claim!r}")
        if claim.get("verdict") not in VERDICTS:
            raise SummaryError(
                f"{where}: claims[{i}]['verdict'] is {claim.get('verdict')!r}; it must be one of {list(VERDICTS)}"
            )
        interval = claim.get("interval")
        if interval is not None and not (
            isinstance(interval, list) and len(interval) == 2 and all(_is_number_or_null(v) for v in interval)
        ):
            raise SummaryError(f"{where}: claims[{i}]['interval'] must be [lo, hi], got {interval!r}")
    return summary


def _summary_outputs(notebook: dict, where: str) -> list[dict[str, Any]]:
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs", []) or []:
            data = output.get("data") or {}
            if SUMMARY_MIME in data:
                payload = data[SUMMARY_MIME]
                if isinstance(payload, str):  # some writers store JSON MIME types as text
                    payload = json.loads(payload)
                found.append(validate(payload, f"{where}, cell {index}"))
    return found


def _title(notebook: dict, fallback: str) -> str:
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            for line in source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def read_summaries(notebooks: Iterable[Path], root: Path | None = None) -> list[NotebookSummary]:
    """The summaries of each notebook, in the order given. ``root`` (the book's source
    folder) makes the page names relative to it; default: ``notebooks/<stem>``."""
    result = []
    for path in notebooks:
        path = Path(path)
        page = (path.relative_to(root).with_suffix("").as_posix() if root is not None
                else f"notebooks/{path.stem}")
        notebook = json.loads(path.read_text(encoding="utf-8"))
        result.append(NotebookSummary(path, page, _title(notebook, path.stem),
                                      _summary_outputs(notebook, str(path))))
    return result


def _link(text: str, page: str) -> str:
    # a MyST link to another document of the book, by its path from the source folder
    return f"[{escape(text)}](/{page}.ipynb)"


def _ours(row: dict[str, Any]) -> str:
    mean, std = row.get("ours_mean"), row.get("ours_std")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return number(mean)
    return f"{number(mean)} ± {number(std)}"


def _interval(claim: dict[str, Any]) -> str:
    interval = claim.get("interval")
    if not interval or all(v is None for v in interval):
        return MISSING  # no interval (e.g. a single seed)
    lo, hi = interval
    return f"[{signed(lo)}, {signed(hi)}]"


def _seeds(seeds: Sequence) -> str:
    if not seeds:
        return "no seeds recorded"
    return ("seed " if len(seeds) == 1 else f"{len(seeds)} seeds: ") + ", ".join(str(s) for s in seeds)


def _experiment_section(item: NotebookSummary, summary: dict[str, Any], heading: str) -> list[str]:
    page = summary["page"] or item.page
    title = summary["title"]
    if len(item.summaries) > 1:  # one notebook executed at several scales: tell them apart
        title = f"{title} (scale {summary['scale']})"
    lines = [f"{heading} {escape(title)}", ""]
    lines.append(
        f"Scale {code(summary['scale'])}, {escape(_seeds(summary['seeds']))}. "
        f"Details, plots and the protocol: {_link('its page', page)}."
    )
    lines.append("")
    if summary["rows"]:
        rows = [
            [_link(row["what"], page), number(row.get("paper")), _ours(row), signed(row.get("difference"))]
            for row in summary["rows"]
        ]
        lines += [table(["", "paper", "ours (mean ± std)", "difference"], rows, ["l", "r", "r", "r"]), ""]
    else:
        lines += ["The notebook reports no rows.", ""]
    if summary["claims"]:
        claims = [
            [_link(claim["claim"], page), f"**{escape(claim['verdict'])}**", _interval(claim),
             escape(claim.get("paper") or MISSING)]
            for claim in summary["claims"]
        ]
        lines += [table(["claim", "verdict", "95% interval", "paper"], claims), ""]
    return lines


def summary_markdown(items: Sequence[NotebookSummary], heading_level: int = 2) -> str:
    """The body of the summary page: one section per notebook, in the order given."""
    heading = "#" * heading_level
    lines: list[str] = []
    for item in items:
        if not item.summaries:
            lines += [
                f"{heading} {escape(item.title)}",
                "",
                f"No summary yet: the notebook {code(item.notebook.name)} carries no "
                f"{code(SUMMARY_MIME)} output, so this table is not summarised here. "
                f"See {_link('its page', item.page)}.",
                "",
            ]
            continue
        for summary in item.summaries:
            lines += _experiment_section(item, summary, heading)
    if not items:
        lines += ["No experiment notebooks were found.", ""]
    return "\n".join(lines).rstrip() + "\n"


def rrd_markdown(items: Sequence[NotebookSummary]) -> str:
    """The RRD page's table: every comparison of RRD with RKD that a page judged (claims
    whose text begins with ``RRD's claim: ``), with its verdict and interval, linking to
    the page; the numbers as the notebooks computed them."""
    prefix = "RRD's claim: "
    rows = []
    for item in items:
        for summary in item.summaries:
            page = summary["page"] or item.page
            for claim in summary["claims"]:
                if claim["claim"].startswith(prefix):
                    rows.append([_link(summary["title"], page), escape(claim["claim"][len(prefix):]),
                                 code(summary["scale"]), f"**{escape(claim['verdict'])}**", _interval(claim)])
    if not rows:
        return "No page has judged RRD against RKD yet.\n"
    return table(["page", "comparison", "scale", "verdict", "95% interval"], rows) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the summary page of the given notebooks.")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print(summary_markdown(read_summaries(args.notebooks)), end="")


if __name__ == "__main__":
    main()
