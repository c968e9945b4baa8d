"""The book's summary of all tables, generated from the executed notebooks.

Each experiment notebook displays one output of MIME type :data:`SUMMARY_MIME` holding::

    {"experiment": "table1", "title": "Table 1", "page": "notebooks/table1_metric_learning",
     "scale": "ci", "seeds": [0, 1, 2],
     "rows": [{"what": str, "dataset": str, "paper dataset": str, "paper": float|null,
               "ours_mean": float|null, "ours_std": float|null, "difference": float|null}],
     "claims": [{"claim": str, "role": "primary"|"exploratory", "dataset": str,
                 "paper dataset": str, "word": str, "summary": str, "paper": str,
                 "comparisons": [{"comparison": str, "verdict": one of rkd.report.stats.VERDICTS,
                                  "interval": [lo, hi], "difference": float|null,
                                  "paper": str, "paper difference": float|null, "MDD": float|null}]}]}

(``difference`` is ours minus the paper's, only where our data are the paper's;
:data:`SUMMARY_MIME` and :data:`VERDICTS` are those of :mod:`rkd.report`, which writes the
record: one definition, read here.)

:func:`summary_markdown` turns the notebooks of a book into one MyST page: first one
matrix of every claim (grouped by table) against the paper's verdict and ours, coloured
and worded, each cell linking to its page; then per table the paper's numbers beside
ours and the claims. A notebook without such an output gets a line saying so, never an
invented row. The numbers are printed as the notebook computed them.

``python -m rkd.book.summary notebooks/*.ipynb`` prints the page.
"""
from __future__ import annotations

import argparse
import html
import json
import math
from collections.abc import Callable, Iterable, Sequence
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
    "matrix_html",
    "rrd_markdown",
]

_TOP_KEYS = {"experiment": str, "title": str, "page": str, "scale": str, "seeds": list, "rows": list,
             "claims": list}
_ROW_NUMBERS = ("paper", "ours_mean", "ours_std", "difference")
_CLAIM_KEYS = ("claim", "role", "dataset", "word", "summary", "paper")


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
        if not isinstance(claim, dict) or any(not isinstance(claim.get(k), str) for k in _CLAIM_KEYS):
            raise SummaryError(f"{where}: claims[{i}] must be an object with strings {list(_CLAIM_KEYS)}, "
                               f"got {claim!r}")
        for j, comparison in enumerate(claim.get("comparisons") or []):
            if comparison.get("verdict") not in VERDICTS:
                raise SummaryError(f"{where}: claims[{i}]['comparisons'][{j}]['verdict'] is "
                                   f"{comparison.get('verdict')!r}; it must be one of {list(VERDICTS)}")
            interval = comparison.get("interval")
            if interval is not None and not (
                    isinstance(interval, list) and len(interval) == 2 and all(_is_number_or_null(v) for v in interval)):
                raise SummaryError(f"{where}: claims[{i}]['comparisons'][{j}]['interval'] must be [lo, hi], "
                                   f"got {interval!r}")
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


def _interval(comparison: dict[str, Any]) -> str:
    interval = comparison.get("interval")
    if not interval or all(v is None for v in interval):
        return MISSING  # no interval (e.g. a single seed)
    lo, hi = interval
    return f"[{signed(lo)}, {signed(hi)}]"


def _seeds(seeds: Sequence) -> str:
    if not seeds:
        return "no seeds recorded"
    return ("seed " if len(seeds) == 1 else f"{len(seeds)} seeds: ") + ", ".join(str(s) for s in seeds)


#: each verdict word's colours (background, text), colour-blind safe; the word is always written too
COLOURS = {
    "holds": ("#cfe3f3", "#0b3d66"), "partly": ("#e3eef7", "#0b3d66"), "mixed": ("#ece6f3", "#3d2b56"),
    "partly reversed": ("#f8e3d3", "#7a3000"), "reversed": ("#f3cdb3", "#7a3000"),
    "does not hold": ("#f3cdb3", "#7a3000"), "no verdict: not converged": ("#f0f0f0", "#555555"),
}
_NEUTRAL = ("#f5f5f5", "#333333")


def _paper_word(count: str) -> str:
    """The paper's verdict on a claim from its count of comparisons that hold (``"3/4"``)."""
    held, _, total = count.partition("/")
    if not total:
        return "n/a"
    return "holds" if held == total else "does not hold" if held == "0" else "partly"


def _cell(word: str, page: str, detail: str = "") -> str:
    background, colour = COLOURS.get(word, _NEUTRAL)
    text = html.escape(word) + (f"<br><small>{html.escape(detail)}</small>" if detail else "")
    return (f'<td style="background:{background};color:{colour}"><a href="{html.escape(page)}" '
            f'style="color:{colour}">{text}</a></td>')


def matrix_html(items: Sequence[NotebookSummary], link: Callable[[str], str]) -> str:
    """Every claim of every page (rows, grouped by table) against the paper's verdict and
    ours on each of our datasets (columns), each cell coloured, worded and linking to the
    page; ``link(page)`` gives a page's URL."""
    body = []
    for item in items:
        for summary in item.summaries:
            page = link(summary["page"] or item.page)
            by_claim: dict[str, list[dict[str, Any]]] = {}
            for claim in summary["claims"]:
                by_claim.setdefault(claim["claim"], []).append(claim)
            if not by_claim:
                continue
            body.append(f'<tr><th colspan="4"><a href="{html.escape(page)}">{html.escape(summary["title"])}</a> '
                        f'<small>(scale {html.escape(summary["scale"])}, {html.escape(_seeds(summary["seeds"]))})'
                        f'</small></th></tr>')
            for text, entries in by_claim.items():
                ours = "".join(_cell(e["word"], page, f"{e['dataset']}: {e['summary']}") for e in entries)
                paper = _cell(_paper_word(entries[0]["paper"]), page, f"{entries[0]['paper']} of its comparisons")
                body.append(f"<tr><td>{html.escape(text)}</td><td>{html.escape(entries[0]['role'])}</td>{paper}"
                            f'<td><table class="rkd-ours"><tr>{ours}</tr></table></td></tr>')
    if not body:
        return ""
    return ('<table class="rkd-matrix"><thead><tr><th>the paper\'s claim</th><th>role</th><th>the paper</th>'
            '<th>ours, per dataset</th></tr></thead><tbody>' + "".join(body) + "</tbody></table>")


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
    rows = summary["rows"]
    if rows:
        same_data = any(row.get("difference") is not None for row in rows)
        header = ["", "our data", "the paper's", "paper", "ours (mean ± std)"] + (["difference"] if same_data else [])
        cells = [[_link(row["what"], page), escape(row.get("dataset", "")), escape(row.get("paper dataset", "")),
                  number(row.get("paper")), _ours(row)] + ([signed(row.get("difference"))] if same_data else [])
                 for row in rows]
        lines += [table(header, cells, ["l", "l", "l", "r", "r"] + (["r"] if same_data else [])), ""]
        if not same_data:
            lines += ["Our data stand in for the paper's here: the values are not comparable, only the orderings "
                      "and the verdicts are; so no difference is shown.", ""]
    else:
        lines += ["The notebook reports no rows.", ""]
    if summary["claims"]:
        claims = [[_link(claim["claim"], page), escape(claim["role"]), escape(claim["dataset"]),
                   f"**{escape(claim['word'])}**", escape(claim["summary"]), escape(claim["paper"])]
                  for claim in summary["claims"]]
        lines += [table(["claim", "role", "our data", "ours", "comparisons", "paper"], claims), ""]
    return lines


def summary_markdown(items: Sequence[NotebookSummary], heading_level: int = 2) -> str:
    """The body of the summary page: the matrix of every claim, then one section per
    notebook, in the order given."""
    heading = "#" * heading_level
    lines: list[str] = []
    matrix = matrix_html(items, lambda page: f"../{page}.html")
    if matrix:
        lines += [f"{heading} Every claim at a glance", "",
                  "Each row is a claim of the paper as its page states it; the paper's verdict on its own numbers, "
                  "and ours on each dataset we ran it on (the word says it, the colour repeats it). Each cell links "
                  "to the page.", "", "```{raw} html", matrix, "```", ""]
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
                    rows += [[_link(summary["title"], page), escape(comparison["comparison"]),
                              escape(claim["dataset"]), code(summary["scale"]),
                              f"**{escape(comparison['verdict'])}**", _interval(comparison)]
                             for comparison in claim["comparisons"]]
    if not rows:
        return "No page has judged RRD against RKD yet.\n"
    return table(["page", "comparison", "our data", "scale", "verdict", "95% interval"], rows) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the summary page of the given notebooks.")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print(summary_markdown(read_summaries(args.notebooks)), end="")


if __name__ == "__main__":
    main()
