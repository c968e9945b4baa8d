"""Pretraining records of the results store (``results/table1.jsonl``), as the glyph-world
page's trunk section reads them."""
from __future__ import annotations

from rkd.runs.results import ResultStore


def trunk_record(network: str, top1s: list[float], steps: int = 8000) -> dict:
    history = [{"step": (i + 1) * steps // len(top1s), "top1": v} for i, v in enumerate(top1s)]
    return {"key": network * 3, "experiment": "table1", "dataset": "glyphs (pretraining)",
            "run": f"pretrained {network}", "role": "pretrain", "seed": 0,
            "metrics": {"glyphs (pretraining)": {"top1": top1s[-1]}},
            "history": history, "steps": steps, "wall_seconds": 600.0, "machine": "a CPU", "date": "2026-12-06"}


def write_trunk_store(folder, *records):
    """``table1.jsonl`` under ``folder`` with ``records`` (default: two converged trunks
    5.4 points apart) and a student's record."""
    records = records or (trunk_record("small_cnn_deep", [80, 90, 93.0, 93.2, 93.4]),
                          trunk_record("small_cnn", [70, 80, 86.0, 87.9, 88.0]))
    student = {"key": "s" * 64, "experiment": "table1", "dataset": "x", "run": "RKD-D", "role": "student",
               "seed": 0, "metrics": {}, "history": [], "steps": 10}
    ResultStore(folder).write("table1", [*records, student])
    return folder
