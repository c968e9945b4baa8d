"""The numbers the paper prints, as data, and helpers to show them beside ours.

``rkd/paper_results/*.csv`` is the project's own copy of every number in Park et al.
(CVPR 2019), Tables 1-6, in long or wide form exactly as transcribed. Figures 3 and 4
are charts without printed numbers, so they have no table here.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .registry import Registry

__all__ = ["paper_table", "PAPER_TABLES"]

_RESULTS_DIR = Path(__file__).parent / "paper_results"

PAPER_TABLES: Registry[str] = Registry("paper table")
for _name, _file in {
    "table1": "table1_recall_at_1.csv",
    "table2": "table2_self_distillation.csv",
    "table3": "table3_recall_at_k.csv",
    "table4": "table4_classification_accuracy.csv",
    "table5": "table5_omniglot_accuracy.csv",
    "table6": "table6_miniimagenet_accuracy.csv",
}.items():
    PAPER_TABLES.register(_name, _file)


def paper_table(name: str) -> pd.DataFrame:
    """The paper's numbers for ``name`` ("table1" ... "table6") as a DataFrame."""
    filename = PAPER_TABLES.get(name)
    return pd.read_csv(_RESULTS_DIR / filename)
