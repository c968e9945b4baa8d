"""The same seed at scale="ci" gives identical numbers, run after run; another seed does not.

The experiment is Table 1's ci preset on digits, cut to a few steps per model (the full
preset takes minutes): everything else, data, models, sampler, losses, thread count and
determinism settings, is the ci preset's.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from rkd.experiments import table1

STEPS = {"teacher": 10, "student": 6}


@pytest.fixture
def short_ci_preset(monkeypatch):
    preset = table1.PRESETS["ci"]
    short = replace(
        preset,
        teacher_train=replace(preset.teacher_train, steps=STEPS["teacher"], milestones=(STEPS["teacher"] // 2,)),
        student_train=replace(preset.student_train, steps=STEPS["student"], milestones=(STEPS["student"] // 2,)),
    )
    monkeypatch.setitem(table1.PRESETS, "ci", short)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the preset sets its own thread count


def run(seed: int) -> pd.DataFrame:
    return table1.run(scale="ci", datasets=("digits",), embedding_dims=(16,), methods=("Triplet", "RKD-DA"),
                      seed=seed, progress=False)


@pytest.mark.slow
def test_same_seed_same_numbers_other_seed_other_numbers(short_ci_preset):
    first, second = run(seed=0), run(seed=0)
    assert len(first) == 4  # the teacher, Triplet, RKD-DA with and without L2
    pd.testing.assert_frame_equal(first, second, check_exact=True)

    other = run(seed=1)
    metrics = [c for c in first.columns if c.startswith("recall_at_")]
    assert not first[metrics].equals(other[metrics]), "another seed must give other numbers"
