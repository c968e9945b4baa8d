"""The one runner: seeds, shared and cached models, keys that never reuse a stale model,
the protocol switch, dry runs, and the errors a caller sees."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

import rkd.runs.training as training_module
from rkd.experiments import ParameterError, get, names, notebook_parameters
from rkd.experiments.datasets import DIGITS
from rkd.experiments.recipes import MetricRecipe, Preset
from rkd.experiments.base import Experiment, Parameter
from rkd.runs.spec import Batches, Evaluation
from rkd.report.stats import Claim, Comparison
from rkd.models.spec import ModelSpec
from rkd.train import TrainConfig

TAPS = ("block2", "block3", "block4")
RECIPE = MetricRecipe(
    teacher=ModelSpec("small_cnn_wide", (("in_channels", 1), ("taps", TAPS))),
    teacher_dim=32,
    student=ModelSpec("small_cnn", (("in_channels", 1), ("taps", TAPS))),
    teacher_train=TrainConfig(steps=6, lr=1e-3),
    student_train=TrainConfig(steps=4, lr=1e-3),
    batches=Batches("m_per_class", size=20, m=4),
    evaluation=Evaluation("recall", ks=(1, 2), batch_size=200, every=2),
)


class Tiny(Experiment):
    """A two-dataset-free miniature of Table 1 on scikit-learn's digits: seconds on a CPU."""

    name = "tiny"
    title = "Tiny"
    page = "tiny"
    metric = "recall_at_1"
    keys = ("method",)
    presets = {"ci": Preset(scale="ci", datasets=(DIGITS,), recipe=RECIPE, seeds=(0, 1), threads=1, num_workers=0)}
    parameters = {"methods": Parameter(tuple[str, ...] | None, None, "")}

    def runs(self, preset, methods=None):
        for data in preset.datasets:
            yield preset.recipe.teacher_run(data)
            for method in methods or ("Triplet", "RKD-DA"):
                yield preset.recipe.student_run(data, method, method=method, dim=8, l2=True)

    def claims(self, rows):
        return [Claim("RKD-DA beats Triplet", (Comparison({"method": "RKD-DA"}, {"method": "Triplet"}),))]


@pytest.fixture
def counted_fit(monkeypatch):
    calls = []
    real = training_module.fit

    def fit(distiller, *args, **kwargs):
        calls.append(kwargs.get("desc"))
        return real(distiller, *args, **kwargs)

    monkeypatch.setattr(training_module, "fit", fit)
    return calls


def test_every_seed_gives_a_row_and_the_teacher_is_trained_once_per_seed(tmp_path, counted_fit):
    results = Tiny().run(cache_dir=str(tmp_path), progress=False)
    assert sorted(results.rows["seed"].unique()) == [0, 1]
    assert len(results.rows) == 2 * 3
    assert sum("teacher" in d for d in counted_fit) == 2  # one teacher per seed, shared by both students
    assert results.rows["recall_at_1"].between(0, 100).all()
    assert {"best_recall_at_1", "best_step"} <= set(results.rows.columns)  # the authors' selection, beside ours
    seeds = results.rows.groupby("run")["recall_at_1"].nunique()
    assert (seeds > 1).any(), "two seeds must give other numbers somewhere"


def test_a_second_run_reads_every_model_from_the_cache_and_gives_the_same_rows(tmp_path, counted_fit):
    first = Tiny().run(cache_dir=str(tmp_path), progress=False)
    trained = len(counted_fit)
    second = Tiny().run(cache_dir=str(tmp_path), progress=False)
    assert len(counted_fit) == trained, "nothing may be retrained"
    pd.testing.assert_frame_equal(first.rows, second.rows)
    assert {k: t.losses for k, t in second.trained.items()} == {k: t.losses for k, t in first.trained.items()}


def test_every_trained_run_has_its_curve_and_the_page_plots_one_per_method(tmp_path, monkeypatch):
    from rkd.report import page

    results = Tiny().run(cache_dir=str(tmp_path), progress=False)
    runs = ("teacher", *results.rows["run"].unique())
    assert set(results.trained) == {(DIGITS.display, run, seed) for run in runs for seed in (0, 1)}
    for trained in results.trained.values():
        steps = trained.job.run.train.steps
        assert trained.losses["step"][-1] == steps and len(trained.losses["total"]) == len(trained.losses["step"])
        assert trained.history[-1]["step"] == steps and trained.steps == steps
    shown = []
    monkeypatch.setattr(page, "_display", shown.append)
    page.show_training_curves(Tiny(), results)
    caption, image = shown
    assert "seed 0" in caption.data and "(3 runs)" in caption.data  # the teacher, Triplet and RKD-DA
    assert image.data.startswith(b"\x89PNG")
    dry = Tiny().run(dry_run=True, progress=False, methods=("Triplet",))
    shown.clear()
    page.show_training_curves(Tiny(), dry)
    assert "No training curves" in shown[0].data


def test_a_changed_teacher_retrains_its_students(tmp_path, counted_fit, monkeypatch):
    Tiny().run(cache_dir=str(tmp_path), progress=False, methods=("RKD-DA",))
    before = len(counted_fit)
    changed = replace(RECIPE, teacher_train=replace(RECIPE.teacher_train, lr=2e-3))
    monkeypatch.setitem(Tiny.presets, "ci", replace(Tiny.presets["ci"], recipe=changed))
    Tiny().run(cache_dir=str(tmp_path), progress=False, methods=("RKD-DA",))
    # both seeds' teachers and the RKD-DA students they teach train again
    assert len(counted_fit) - before == 4


def test_seeds_parameter_and_bad_seeds(tmp_path):
    results = Tiny().run(cache_dir=str(tmp_path), progress=False, seeds=[3], methods=("Triplet",))
    assert set(results.rows["seed"]) == {3}
    with pytest.raises(ValueError, match="repeat a seed"):
        Tiny().run(cache_dir=str(tmp_path), seeds=[1, 1])
    with pytest.raises(ValueError, match="non-empty list of ints"):
        Tiny().run(cache_dir=str(tmp_path), seeds=[])


def test_unknown_parameter_scale_and_protocol_are_refused_with_the_valid_names(tmp_path):
    with pytest.raises(TypeError, match="takes no parameter"):
        Tiny().run(cache_dir=str(tmp_path), embeding_dims=(8,))
    with pytest.raises(ValueError, match="valid scales: ci"):
        Tiny().plan("gpu")
    with pytest.raises(KeyError, match="authors_code, paper_text"):
        Tiny().plan("ci", protocol="authors")


def test_notebook_parameters_check_names_and_types():
    experiment = get("table1")
    assert notebook_parameters({"scale": "ci", "seeds": [0, 1], "embedding_dims": [8]}, experiment) == {
        "scale": "ci", "seeds": (0, 1), "embedding_dims": (8,)}
    with pytest.raises(ParameterError, match="unknown notebook parameter"):
        notebook_parameters({"sede": 1}, experiment)
    with pytest.raises(ParameterError, match="expected"):
        notebook_parameters({"seeds": "0"}, experiment)


def test_every_experiment_plans_both_scales_with_the_protocol_columns():
    assert names() == sorted(["table1", "table2", "table3", "table4", "table5", "table6", "figure3", "figure4"])
    for name in names():
        for scale in ("ci", "paper"):
            plan = get(name).plan(scale)
            assert {"dataset", "role", "network", "embedding", "L2", "method", "loss terms", "optimiser", "lr",
                    "weight decay", "steps", "milestones", "gamma", "batch", "image size", "seeds"} <= set(plan.columns)
            assert plan["steps"].gt(0).any()


def test_the_plan_at_paper_scale_has_the_authors_sop_schedules():
    plan = get("table2").plan("paper")
    sop = plan[plan["dataset"] == "SOP"].set_index("run")
    assert sop.loc["teacher", "steps"] == 40_000 and sop.loc["teacher", "milestones"] == "25000, 30000, 35000"
    assert sop.loc["generation 1", "steps"] == 60_000 and sop.loc["generation 1", "milestones"] == "20000, 40000"


def test_the_protocol_switch_changes_the_loss_options_and_fitnet_runs_in_two_stages():
    authors = get("table1").plan("paper", protocol="authors_code").set_index(["dataset", "run"])
    text = get("table1").plan("paper", protocol="paper_text").set_index(["dataset", "run"])
    teacher = ("CUB-200-2011", "teacher")
    assert "squared=False" in authors.loc[teacher, "term options"]
    assert "squared=True" in text.loc[teacher, "term options"]
    hint = ("CUB-200-2011", "FitNet d=16 (hint stage)")
    assert authors.loc[hint, "lr"] == 1e-5 and "learn_regressors=False" in authors.loc[hint, "term options"]
    assert "learn_regressors=True" in text.loc[hint, "term options"]
    assert authors.loc[("CUB-200-2011", "FitNet d=16"), "starts from"] == "FitNet d=16 (hint stage)"
    assert authors.loc[teacher, "batch"].startswith("25 classes x 5 images + 3")
