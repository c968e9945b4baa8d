"""Small helpers to write MyST Markdown safely from data (table cells, numbers)."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = ["escape", "code", "table", "number", "signed"]

# characters that mean something in MyST inline syntax (links, emphasis, roles, dollar
# maths, table pipes, HTML): a backslash makes each one literal
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|$~])")

#: shown where a number is absent (the paper printed none, or we have none)
MISSING = "—"


def escape(text: object) -> str:
    """``text`` as literal MyST inline text, on one line (safe inside a table cell)."""
    flat = " ".join(str(text).split())
    return _SPECIAL.sub(r"\\\1", flat)


def code(text: object) -> str:
    """``text`` as an inline code span (no escapes apply inside one), on one line."""
    flat = " ".join(str(text).split())
    fence = "`"
    while fence in flat:
        fence += "`"
    padding = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{padding}{flat}{padding}{fence}"


def number(value: float | int | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals; :data:`MISSING` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{digits}f}"


def signed(value: float | int | None, digits: int = 2) -> str:
    """A difference with its sign (``+1.25``, ``−0.50``); :data:`MISSING` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    text = f"{value:+.{digits}f}"
    return text.replace("-", "−")  # a real minus sign, so the column reads as numbers


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A pipe table; cells are used as given (escape them first), ``align`` holds
    ``"l"`` or ``"r"`` per column."""
    align = align or ["l"] * len(header)
    if len(align) != len(header):
        raise ValueError(f"table: {len(header)} columns but {len(align)} alignments")
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table: a row has {len(row)} cells, the header {len(header)}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
