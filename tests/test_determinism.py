"""The same seed gives identical rows, run after run, whatever ran before it; another
seed gives other numbers.

Through the one runner with a miniature metric-learning experiment on scikit-learn's
digits (a triplet teacher and two distilled students, a few steps each): the data,
networks, sampler, losses, seeding and determinism settings are the ones every
experiment uses, at a fraction of a ci preset's minutes.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

import rkd.runs.training as training_module
from rkd.experiments.datasets import DIGITS
from rkd.experiments.recipes import MetricRecipe, Preset
from rkd.experiments.base import Experiment
from rkd.runs.spec import Batches, Evaluation
from rkd.models.spec import ModelSpec
from rkd.train import TrainConfig

TAPS = ("block2", "block3", "block4")


class Miniature(Experiment):
    name = "miniature"
    title = "Miniature"
    page = "miniature"
    metric = "recall_at_1"
    presets = {"ci": Preset(
        scale="ci", datasets=(replace(DIGITS, max_test_per_class=30),), threads=1, num_workers=0, seeds=(0,),
        recipe=MetricRecipe(
            teacher=ModelSpec("small_cnn_wide", (("in_channels", 1), ("taps", TAPS))), teacher_dim=32,
            student=ModelSpec("small_cnn", (("in_channels", 1), ("taps", TAPS))),
            teacher_train=TrainConfig(steps=6, lr=1e-3, milestones=(3,), gamma=0.1),
            student_train=TrainConfig(steps=4, lr=1e-3, milestones=(2,), gamma=0.1),
            batches=Batches("m_per_class", size=20, m=4),
            evaluation=Evaluation("recall", ks=(1, 2, 4), batch_size=500)),
    )}

    def runs(self, preset):
        recipe = preset.recipe
        for data in preset.datasets:
            yield recipe.teacher_run(data)
            yield recipe.student_run(data, "Triplet", method="Triplet", dim=8, l2=True)
            yield recipe.student_run(data, "RKD-DA", method="RKD-DA", dim=8, l2=False)


@pytest.fixture
def trained(monkeypatch):
    """The runs that trained (a run read from a cache would prove nothing)."""
    calls = []
    real = training_module.fit

    def fit(*args, **kwargs):
        calls.append(kwargs.get("desc"))
        return real(*args, **kwargs)

    monkeypatch.setattr(training_module, "fit", fit)
    return calls


def run(tmp_path, name: str, seeds) -> pd.DataFrame:
    # a cache of its own per call: every call trains every model
    return Miniature().run(seeds=seeds, cache_dir=str(tmp_path / name), progress=False).rows


def test_same_seed_same_rows_whatever_ran_before_other_seed_other_numbers(tmp_path, trained):
    forward = run(tmp_path, "forward", [0, 1])
    backward = run(tmp_path, "backward", [1, 0])  # each seed trained after the other one this time
    assert len(trained) == 12, "both calls must train all three models for both seeds"
    assert len(forward) == 6 and forward["recall_at_1"].between(0, 100).all()
    for seed in (0, 1):
        pd.testing.assert_frame_equal(forward[forward["seed"] == seed].reset_index(drop=True),
                                      backward[backward["seed"] == seed].reset_index(drop=True), check_exact=True)
    metrics = [c for c in forward.columns if c.startswith("recall_at_")]
    zero, one = (forward.loc[forward["seed"] == s, metrics].reset_index(drop=True) for s in (0, 1))
    assert not zero.equals(one), "another seed must give other numbers"
