"""The glyph-world page's pretrained trunks: how well the two networks that play
ImageNet-pretrained ResNet50 and ResNet18 learnt the pretraining corpus, from the results
store, against the gap the paper's pair has on ImageNet.

The records are the ``role == "pretrain"`` lines of ``results/table1.jsonl`` (Table 1's
stand-in recipe pretrains both trunks; every other metric-learning page starts from the
same two, by the same key). For each trunk: its network, the role it plays, its steps,
its top-1 on held-out renders of the pretraining corpus after the last step, and whether
it had converged (:mod:`rkd.runs.convergence`: the rise over the last fifth of training).

``python -m rkd.book.trunks results`` prints the section.
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rkd.book.markdown import code, escape, number, table
from rkd.runs.convergence import TOLERANCE, final_rise
from rkd.runs.results import ResultStore

__all__ = ["TrunkError", "IMAGENET_TOP1", "GAP_RANGE", "trunk_rows", "trunks_markdown"]

#: torchvision's published ImageNet top-1 of the paper's pair (IMAGENET1K_V1 weights)
IMAGENET_TOP1 = {"ResNet50": 76.13, "ResNet18": 69.76}
#: the trunk gap (points) that counts as the paper's regime
GAP_RANGE = (3.0, 9.0)
_EXPERIMENT = "table1"


class TrunkError(ValueError):
    """The store holds no pretrained trunks, or a record that cannot be read."""


def _roles() -> dict[str, str]:
    """Network name -> the paper's network it plays (Table 1's ci recipe)."""
    from rkd.experiments.table1 import CI

    return {CI.teacher.name: "ResNet50", CI.student.name: "ResNet18"}


def trunk_rows(records: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per pretrained trunk of ``records`` (key -> record): network, role, steps,
    held-out top-1 and its rise over the last fifth of training."""
    roles, rows = _roles(), []
    for record in records.values():
        if record.get("role") != "pretrain":
            continue
        try:
            network = record["run"].removeprefix("pretrained ")
            top1 = float(next(iter(record["metrics"].values()))["top1"])
            points = [(h["step"], h["top1"]) for h in record["history"] if "top1" in h]
        except (KeyError, TypeError, StopIteration, ValueError) as error:
            raise TrunkError(f"the pretraining record {record.get('run')!r} cannot be read ({error!r})") from None
        rows.append({"network": network, "plays": roles.get(network, "—"), "steps": int(record["steps"]),
                     "top1": top1, "rise": final_rise(points, int(record["steps"])), "last": _last_move(points),
                     "minutes": (record.get("wall_seconds") or 0) / 60, "machine": record.get("machine", "")})
    if not rows:
        raise TrunkError(f"results/{_EXPERIMENT}.jsonl holds no pretrained trunk: run `make results`")
    return sorted(rows, key=lambda row: -row["top1"])


def _last_move(points: list[tuple[int, float]]) -> tuple[int, float] | None:
    """The last evaluation interval: its length in steps and the metric's change over it."""
    if len(points) < 2:
        return None
    (before, first), (after, last) = sorted(points)[-2:]
    return after - before, last - first


def _still_rising_note(rows: list[dict[str, Any]]) -> str:
    """A sentence for each trunk the stated rule counts as still rising but whose last
    interval is flat: the rule stands, and the reader sees both numbers."""
    notes = [f"`{r['network']}` moved {r['last'][1]:+.2f} points over its last {r['last'][0]:,} steps, so it is "
             f"flat at the end, but its rise over the last fifth ({r['rise']:+.2f}) is above the pages' "
             f"{TOLERANCE:g}-point rule, and the table counts it as still rising"
             for r in rows if r["rise"] is not None and r["rise"] > TOLERANCE and r["last"] is not None
             and abs(r["last"][1]) <= TOLERANCE]
    return "; ".join(notes) + "." if notes else ""


def _verdict(rise: float | None) -> str:
    if rise is None:
        return "not judged (too few evaluations)"
    return "yes" if rise <= TOLERANCE else "no, still rising"


def trunks_markdown(results_dir: str | Path) -> str:
    """The section: the trunks' table and their gap against the paper's pair's (MyST)."""
    rows = trunk_rows(ResultStore(results_dir).records(_EXPERIMENT))
    body = [[code(r["network"]), escape(r["plays"]), f"{r['steps']:,}", number(r["top1"], 1),
             "—" if r["rise"] is None else f"{r['rise']:+.2f}",
             "—" if r["last"] is None else f"{r['last'][1]:+.2f}", _verdict(r["rise"])] for r in rows]
    lines = [table(["trunk", "plays", "steps", "held-out top-1 (%)", "rise over the last fifth (points)",
                    "last interval (points)", "converged"], body), ""]
    note = _still_rising_note(rows)
    if note:
        lines += [note, ""]
    by_role = {r["plays"]: r["top1"] for r in rows}
    if {"ResNet50", "ResNet18"} <= set(by_role):
        gap = by_role["ResNet50"] - by_role["ResNet18"]
        paper_gap = IMAGENET_TOP1["ResNet50"] - IMAGENET_TOP1["ResNet18"]
        low, high = GAP_RANGE
        inside = low <= gap <= high
        lines.append(
            f"The teacher's trunk leads the student's by **{gap:.1f} points**; on ImageNet, ResNet50 leads "
            f"ResNet18 by {paper_gap:.1f} ({IMAGENET_TOP1['ResNet50']:g} against {IMAGENET_TOP1['ResNet18']:g}, "
            f"torchvision's published weights). "
            + (f"That is inside the {low:g}-{high:g} points we take as the paper's regime." if inside else
               f"That is **outside** the {low:g}-{high:g} points we take as the paper's regime: the pages' "
               f"verdicts on teacher-student gaps are made in another regime than the paper's."))
    lines.append("")
    machines = sorted({r["machine"] for r in rows if r["machine"]})
    minutes = " and ".join(f"{r['minutes']:.0f}" for r in rows)
    lines.append(f"Each trunk trained once (seed 0, as one set of ImageNet weights serves every run), in "
                 f"{minutes} minutes on one core"
                 + (f" of {escape(', '.join(machines))}" if machines else "") + "; the numbers are read from "
                 f"`results/{_EXPERIMENT}.jsonl` when the book is built.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rkd.book.trunks", description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", nargs="?", default="results")
    print(trunks_markdown(parser.parse_args(argv).results_dir))


if __name__ == "__main__":
    main()
