"""The training log: a CSV of every step's loss terms and every evaluation, which a
page can plot and a killed run keeps.

One row per value, ``step,kind,name,value``: ``kind`` is ``loss`` (each weighted term
and their ``total``, after the step) or ``eval`` (each metric of an evaluation after the
step). Rows are appended and flushed as the run goes (every :data:`FLUSH_SECONDS` at
most, since a write per step costs a stand-in step about half a percent), always before
a checkpoint is written and when the run stops, so the file on disk covers at least
every checkpointed step; a resumed run
first drops the rows past its checkpoint (and the final evaluation, which runs again),
so the log of a run killed and resumed any number of times equals an uninterrupted
run's. At the end the whole log is rewritten atomically.

    import pandas as pd
    log = pd.read_csv("run.log.csv")
    curves = log[log.kind == "loss"].pivot(index="step", columns="name", values="value")
"""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

from ..runtime import atomic_write
from .checkpoint import remove_orphaned_temporaries

__all__ = ["TrainingLog", "default_log_path", "read_training_log", "COLUMNS", "FLUSH_SECONDS"]

COLUMNS = ("step", "kind", "name", "value")
#: :meth:`TrainingLog.flush` with ``force=False`` writes when this many seconds have passed since the last write
FLUSH_SECONDS = 2.0


def default_log_path(checkpoint_path: str | Path | None) -> Path | None:
    """``run.ckpt`` -> ``run.log.csv`` beside it; None without a checkpoint."""
    if checkpoint_path is None:
        return None
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(checkpoint_path.stem + ".log.csv")


def read_training_log(path: str | Path):
    """The log at ``path`` as a DataFrame with :data:`COLUMNS` (``step`` an int, ``value``
    a float), e.g. for :func:`rkd.report.plots.training_curves`. Read as a resumed run
    reads it: the rows before the first line a kill cut short."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}: logs are written beside a run's checkpoint "
                                f"(fit(..., checkpoint_path=...) or log_path=...)")
    rows = _read_rows(path)
    if rows is None:
        raise ValueError(f"{path} is not a training log: its first line is not the header {','.join(COLUMNS)}")
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype({"step": "int64", "value": "float64"})


def _read_rows(path: Path) -> list[tuple[int, str, str, float]] | None:
    """The rows of the log at ``path`` up to the first damaged line (one a kill cut
    short); None when the file does not start with the header."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            return None
        rows = []
        for fields in reader:
            if len(fields) != len(COLUMNS):
                break
            try:
                rows.append((int(fields[0]), fields[1], fields[2], float(fields[3])))
            except ValueError:
                break
        return rows


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


class TrainingLog:
    """The CSV log of one run at ``path``; ``resume_step`` is the checkpoint's step
    (None: a fresh run, whose old log, if any, is replaced)."""

    def __init__(self, path: str | Path, *, total_steps: int, resume_step: int | None = None):
        self.path = Path(path)
        self.total_steps = total_steps
        self.rows: list[tuple[int, str, str, float]] = []
        remove_orphaned_temporaries(self.path)
        if resume_step is not None and self.path.is_file():
            self.rows = [row for row in self._read() if self._kept_on_resume(row, resume_step)]
        self._rewrite()
        self._written = len(self.rows)
        self._file = open(self.path, "a", newline="")
        self._last_write = time.monotonic()

    def _kept_on_resume(self, row, resume_step: int) -> bool:
        step, kind = row[0], row[1]
        if kind == "eval" and step >= self.total_steps:
            return False  # the final evaluation runs again
        return step <= resume_step

    def _read(self) -> list[tuple[int, str, str, float]]:
        return _read_rows(self.path) or []  # not a log of this layout: start it afresh

    def _render(self, rows) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for step, kind, name, value in rows:
            writer.writerow((step, kind, name, repr(value) if math.isfinite(value) else str(value)))
        return buffer.getvalue()

    def _rewrite(self) -> None:
        with atomic_write(self.path, "w") as handle:
            handle.write(",".join(COLUMNS) + "\n" + self._render(self.rows))

    def add_losses(self, step: int, losses: dict[str, float]) -> None:
        """``step`` 1-based: the number of steps done."""
        self.rows += [(step, "loss", name, float(value)) for name, value in losses.items()]
        self.rows.append((step, "loss", "total", float(sum(losses.values()))))

    def add_eval(self, step: int, metrics: dict[str, Any], prefix: str = "") -> None:
        """Every number of ``metrics``; nested dicts as ``outer/inner`` names."""
        for name, value in metrics.items():
            if isinstance(value, dict):
                self.add_eval(step, value, prefix=f"{prefix}{name}/")
                continue
            number = _number(value)
            if number is not None:
                self.rows.append((step, "eval", f"{prefix}{name}", number))

    def flush(self, *, force: bool = True) -> None:
        """Append the rows added since the last flush to the file, and flush it; with
        ``force=False`` only when :data:`FLUSH_SECONDS` have passed since the last write."""
        if not force and time.monotonic() - self._last_write < FLUSH_SECONDS:
            return
        if self._written < len(self.rows):
            self._file.write(self._render(self.rows[self._written:]))
            self._file.flush()
            self._written = len(self.rows)
            self._last_write = time.monotonic()

    def close(self, complete: bool) -> None:
        """Flush; when the run ``complete``d, rewrite the whole log atomically."""
        self.flush()
        self._file.close()
        if complete:
            self._rewrite()
