"""The results store: every training run's numbers kept as data in the repository, one
text file per page (``results/<experiment>.jsonl``), so that a page can show converged,
many-seed results that cost hours of CPU without retraining them.

One JSON line per job: its key (the digest of its full configuration, see
:mod:`rkd.runs.jobs`), where it is shown (experiment, dataset, run, seed), its measured
numbers (``metrics``, few-shot's per-episode ``episodes``, the ``history`` of
evaluations along training, ``losses``: each loss term's curve, averaged over at most
:data:`rkd.runs.training.CURVE_POINTS` stretches of steps) and how it was made (``steps``, ``wall_seconds``,
``machine``, ``date``, ``torch``). Floats are written as Python's shortest repr, which
reads back to the same bits.

The runner reads a job's numbers from here before training it (a job missing from the
store is trained); ``make results`` retrains every job and rewrites the files, and
``make test`` retrains a sample of whole chains and compares them bit for bit
(:mod:`rkd.experiments.results`). Which numbers must be equal and which describe the
machine: :data:`MEASURED` and :data:`CIRCUMSTANCES`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..runtime import atomic_write

__all__ = ["ResultStore", "default_results_dir", "scale_dir", "same_measurements", "MEASURED", "CIRCUMSTANCES",
           "RESULTS_ENV", "STORED_SCALES"]

#: the scales whose records the store keeps (``make results``, ``make results SCALE=converged``):
#: a paper-scale run is the reader's own, trained where its data is
STORED_SCALES = ("ci", "converged")

#: the fields a retrained job must reproduce bit for bit
MEASURED = ("metrics", "episodes", "history", "losses", "steps")
#: the fields that say where and when a job ran (they differ between machines)
CIRCUMSTANCES = ("wall_seconds", "machine", "date", "torch")
#: where the store is (default: ``results/`` of the source checkout rkd is imported from)
RESULTS_ENV = "RKD_RESULTS_DIR"


def default_results_dir(scale: str = "ci") -> Path | None:
    """``$RKD_RESULTS_DIR`` when set (empty: no store); else ``results/`` of the checkout
    rkd is imported from (an editable install); else None (no store: every run trains).
    The records of ``scale="ci"`` lie there, those of any other scale in its subfolder
    named as the scale (``results/converged/``)."""
    configured = os.environ.get(RESULTS_ENV)
    if configured is not None:
        base = Path(configured).expanduser() if configured.strip() else None
    else:
        checkout = Path(__file__).resolve().parents[2]
        base = checkout / "results" if (checkout / "pyproject.toml").is_file() and (checkout / "results").is_dir() \
            else None
    return None if base is None else scale_dir(base, scale)


def scale_dir(base: Path, scale: str) -> Path:
    """Where the records of ``scale`` lie under the store folder ``base``: ``base`` itself
    for ``scale="ci"``, its subfolder named as the scale otherwise."""
    return base if scale == "ci" else base / scale


class ResultStore:
    """The stored records under ``directory`` (None: an empty store that keeps nothing),
    read once per experiment file."""

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = Path(directory) if directory is not None else None
        self._loaded: dict[str, dict[str, dict[str, Any]]] = {}

    def path(self, experiment: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{experiment}.jsonl"

    def records(self, experiment: str) -> dict[str, dict[str, Any]]:
        """Job key -> record, for ``experiment`` (empty when it has no file)."""
        if experiment not in self._loaded:
            path = self.path(experiment)
            found: dict[str, dict[str, Any]] = {}
            if path is not None and path.is_file():
                with open(path) as handle:
                    for number, line in enumerate(handle, 1):
                        if line.strip():
                            try:
                                record = json.loads(line)
                            except json.JSONDecodeError as err:
                                raise ValueError(f"{path}, line {number}: not a JSON record ({err.msg}); "
                                                 f"restore the file from git or run `make results`") from None
                            found[record["key"]] = record
            self._loaded[experiment] = found
        return self._loaded[experiment]

    def get(self, experiment: str, key: str) -> dict[str, Any] | None:
        return self.records(experiment).get(key)

    def write(self, experiment: str, records: Iterable[Mapping[str, Any]]) -> Path:
        """Replace ``experiment``'s file by ``records`` (in the order given), atomically."""
        path = self.path(experiment)
        if path is None:
            raise ValueError("this result store has no directory to write to")
        records = [dict(r) for r in records]
        with atomic_write(path, "w") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True, allow_nan=True) + "\n")
        self._loaded[experiment] = {r["key"]: r for r in records}
        return path

    def add(self, experiment: str, record: Mapping[str, Any]) -> Path:
        """Add ``record`` to ``experiment``'s file (replacing one with its key), atomically."""
        return self.write(experiment, [*(r for k, r in self.records(experiment).items() if k != record["key"]),
                                       record])

    def remove(self, experiment: str) -> None:
        """Delete ``experiment``'s file, and the store's folder once it holds nothing."""
        path = self.path(experiment)
        if path is not None:
            path.unlink(missing_ok=True)
            if path.parent.is_dir() and not any(path.parent.iterdir()):
                path.parent.rmdir()
        self._loaded.pop(experiment, None)


def same_measurements(stored: Mapping[str, Any], retrained: Mapping[str, Any]) -> list[str]:
    """The :data:`MEASURED` fields in which ``retrained`` differs from ``stored`` (empty:
    bit-identical), compared as they read back from JSON."""
    def text(value: Any) -> str:  # NaN equals NaN here, as it reads back from the file
        return json.dumps(value, sort_keys=True, allow_nan=True)

    return [field for field in MEASURED if text(stored.get(field)) != text(retrained.get(field))]
