"""The paper's tables and figures as experiments, without training: the paper presets
follow the paper's protocol, every claim judged on the paper's own numbers gives the
paper's verdict, the side-by-side table puts the paper's number and ours on the same
row, Figures 3 and 4 do what is their own, and bad names fail with the valid ones.

(The runner itself, its cache and its seeds are tested in test_runner.py; the
statistics in test_stats.py; every notebook end to end in test_notebooks_paper_dry_run.py.)
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import rkd.report.page as report
from rkd.paper import paper_table
import rkd.runs.jobs as jobs_module
import rkd.runs.runner as runner_module
import rkd.runs.training as training_module
from rkd.data import DatasetLayoutError
from rkd.data.splits import DataSpec, load_split
from rkd.experiments import get, names, notebook_parameters
from rkd.experiments import figure3, figure4, table1, table4, table5, table6
from rkd.experiments.datasets import DIGITS
from rkd.experiments.notebook import PAGES
from rkd.runs.plan import method_of, resolve_runs
from rkd.runs.policies import DRY_RUN, feasible_ks
from rkd.runs.runner import Results
from rkd.experiments.table1 import RELATIVE_GAIN
from rkd.report.claims import claim_summary
from rkd.report.stats import HOLDS, PAPER_UNCLEAR, REVERSED, UNCLEAR, judge
from rkd.report.verdicts import summarize_verdicts
from rkd.registry import UnknownNameError
from rkd.train import TrainConfig

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_data import make_omniglot_tree  # noqa: E402

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
TABLES = ("table1", "table2", "table3", "table4", "table5", "table6")


# ------------------------------------------------------------------ the paper's numbers as our rows


def rows_from_paper(experiment, seeds=(0,), rename=None) -> pd.DataFrame:
    """The paper's numbers in the form of our result rows (one row per model, seed and
    dataset), each seed shifted by the same amount everywhere: paired differences between
    models are exactly the paper's. ``rename``: the paper's dataset -> ours."""
    paper = experiment.paper()
    frames = []
    for seed in seeds:
        frame = paper.rename(columns={"value": experiment.metric}).copy()
        frame[experiment.metric] += 0.5 * seed
        frame["seed"] = seed
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    if "method" in rows.columns:
        teacher = rows["method"].isin(["Triplet (teacher)", "Teacher"])
        rows["role"] = np.where(teacher, "teacher", "student")
        rows["model"] = rows["method"]  # few-shot rows name their model (keyed() reads it)
    rows["scale"] = "ci"
    if rename:
        rows["dataset"] = rows["dataset"].map(rename)
    return rows


def results_of(experiment, rows, datasets) -> Results:
    return Results(experiment=experiment.name, scale="ci", protocol="authors_code",
                   seeds=tuple(int(s) for s in sorted(rows["seed"].unique())), rows=rows, plan=pd.DataFrame(),
                   datasets=datasets)


def paper_verdicts(name) -> dict[tuple[str, str], str]:
    """(claim, dataset) -> "holds/checked" on the paper's numbers."""
    experiment = get(name)
    rows = experiment.with_derived(rows_from_paper(experiment), experiment.metric)
    paper = experiment.with_derived(experiment.paper(), "value")
    judged = judge(experiment.claims(rows), rows, experiment.metric, paper=paper)
    return {(r["claim"], r["dataset"]): r["paper"] for _, r in summarize_verdicts(judged).iterrows()}


# ------------------------------------------------------------------ claims on the paper's numbers


def test_table1_claims_on_the_papers_numbers():
    verdicts = paper_verdicts("table1")
    for dataset in ("CUB-200-2011", "Cars196"):
        # the paper's headline: RKD students beat the Triplet student at every size
        assert verdicts["RKD-DA beats the Triplet student of its size", dataset] == "2/2"
        assert verdicts["RKD-D and RKD-A beat the Triplet student of their size", dataset] == "4/4"
        assert verdicts["an RKD-DA student without L2 normalisation beats the same one with it", dataset] == "1/1"
        # DarkRank beats RKD-DA at d=16 on both datasets (46.84 > 45.76, 64.00 > 61.78)
        assert verdicts["RKD-DA beats DarkRank, the strongest baseline, at the small size", dataset] == "0/1"
        assert verdicts["RKD-DA beats FitNet, Attention and DarkRank at the same size (L2 on)", dataset] == "5/5"
        # the relative gain over Triplet: CUB 21.3% at d=16 against 10.6% at d=64; Cars 36.1% against 23.6%
        assert verdicts["RKD-DA's relative gain over Triplet grows as the embedding shrinks", dataset] == "1/1"
    # judged on Cars196 only, as the paper states it
    assert ("an RKD-DA student without L2 normalisation beats its teacher at d >= 64 (Cars196)",
            "CUB-200-2011") not in verdicts
    assert verdicts["an RKD-DA student without L2 normalisation beats its teacher at d >= 64 (Cars196)",
                    "Cars196"] == paper_expected_teacher_claim()


def paper_expected_teacher_claim() -> str:
    """The paper's own verdict on its Cars196 d=64 RKD-DA no-L2 student against its teacher."""
    frame = paper_table("table1")
    cars = frame[frame["dataset"] == "Cars196"]
    student = cars[(cars["method"] == "RKD-DA") & (cars["embedding_dim"] == 64) & (cars["l2_normalize"] == "no")]
    teacher = cars[cars["method"] == "Triplet (teacher)"]
    return "1/1" if student["recall_at_1"].item() > teacher["recall_at_1"].item() else "0/1"


def test_table2_and_table3_claims_on_the_papers_numbers():
    verdicts = paper_verdicts("table2")
    for dataset in ("CUB-200-2011", "Cars196", "SOP"):
        assert verdicts["every generation beats the teacher", dataset] == "3/3"
        assert verdicts["later generations are equivalent to the first (within 2 points)", dataset] == "2/2"
    verdicts = paper_verdicts("table3")
    for dataset in ("CUB-200-2011", "Cars196", "SOP"):
        assert verdicts["RKD-DA GoogLeNet-512 beats GoogLeNet-128", dataset] == "1/1"
        assert verdicts["RKD-DA ResNet50-128 beats GoogLeNet-128", dataset] == "1/1"
    # Table 3 prints no teacher row: the claim's paper side reads Table 2's generation 0 (61.24, 77.17,
    # 76.58): on CUB GoogLeNet-128 falls short (60.8), on SOP both GoogLeNet students do (74.5, 75.1)
    teacher_claim = "an RKD-DA student beats its teacher"
    assert [verdicts[teacher_claim, d] for d in ("CUB-200-2011", "Cars196", "SOP")] == ["2/3", "3/3", "1/3"]


def test_table4_claims_on_the_papers_numbers():
    verdicts = paper_verdicts("table4")
    for dataset in ("CIFAR-100", "Tiny ImageNet"):
        assert verdicts["RKD-D and RKD-DA each beat the baseline", dataset] == "2/2"
        assert verdicts["RKD-DA beats RKD-D", dataset] == "1/1"
        assert verdicts["HKD+RKD-DA beats every other configuration of the paper", dataset] == "8/8"
    claim = "combining RKD-DA with HKD, FitNet or attention helps in most cases"
    assert verdicts[claim, "CIFAR-100"] == "3/3"
    # Tiny ImageNet: FitNet+RKD-DA (55.54) is below FitNet (55.59)
    assert verdicts[claim, "Tiny ImageNet"] == "2/3"


def test_fewshot_claims_on_the_papers_numbers():
    omniglot = paper_verdicts("table5")
    assert omniglot["RKD-D beats its teacher", "Omniglot"] == "4/4"
    assert omniglot["RKD-DA beats its teacher", "Omniglot"] == "3/4"  # 20-way 5-shot: 98.67 < 98.68
    # miniImageNet prints 95% intervals: the paper's side uses them
    mini = paper_verdicts("table6")
    assert mini["FitNet beats its teacher", "miniImageNet"] == "2/2"  # 50.38 ± 0.81 against 49.10 ± 0.82
    assert mini["Attention falls far below its teacher", "miniImageNet"] == "2/2"


# ------------------------------------------------------------------ the page on ours = the paper's


@pytest.mark.parametrize("paper_names", [False, True], ids=["stand-ins", "paper scale"])
@pytest.mark.parametrize("name", TABLES)
def test_side_by_side_claims_and_summary_record_align_ours_with_the_papers_rows(name, paper_names, monkeypatch):
    """Our rows are the paper's numbers plus 0, 0.5 and 1.0 (three seeds): every cell of
    the side-by-side table must show +0.50 beside the paper's own number, and every
    claim our verdict of the paper's sign. At paper scale our dataset names are the
    paper's (the issue's crash: columns overlapped)."""
    experiment = get(name)
    paper = experiment.paper()
    paper_datasets = list(dict.fromkeys(paper["dataset"]))
    rename = {d: d if paper_names else f"stand-in {i}" for i, d in enumerate(paper_datasets)}
    rows = rows_from_paper(experiment, seeds=(0, 1, 2), rename=rename)
    datasets = tuple(DataSpec(f"d{i}", rename[d], stands_in_for=None if paper_names else d)
                     for i, d in enumerate(paper_datasets))
    results = results_of(experiment, rows, datasets)

    table = report.side_by_side_table(experiment, results)
    for paper_dataset in paper_datasets:
        ours = rename[paper_dataset]
        label = ours if paper_names else f"{ours} (for {paper_dataset})"
        block = table[label]
        expected = paper[paper["dataset"] == paper_dataset]
        # a difference only where our data are the paper's: stand-in values are not comparable
        assert ("ours − paper" in block.columns) == paper_names
        for _, row in expected.iterrows():
            key = tuple(row[k] for k in experiment.keys)
            assert block.loc[key, "paper"] == f"{row['value']:.2f}"
            assert block.loc[key, "ours (mean ± std)"] == f"{row['value'] + 0.5:.2f} ± 0.50"
            if paper_names:
                assert block.loc[key, "ours − paper"] == "+0.50"
    if experiment.order(results) is not None:
        first = [k for k in (tuple(o) for o in experiment.order(results)) if k in table.index]
        assert list(table.index[:len(first)]) == first

    judged = report.judged_claims(experiment, results)
    assert not judged.empty and set(judged["seeds"]) == {3}
    for _, row in judged.iterrows():
        if RELATIVE_GAIN in row["comparison"]:
            continue  # a ratio of ours: not the paper's plus a constant
        difference = row["paper: difference"]
        assert row["ours: mean difference"] == pytest.approx(difference, abs=1e-9)
        if row["kind"] == "beats":
            expected = HOLDS if difference > 1e-9 else REVERSED if difference < -1e-9 else UNCLEAR
            assert row["verdict"] == expected, row["comparison"]
        # the paper's own verdict: by its numbers' sign, or by its printed intervals where it has them
        assert row["paper"] in (HOLDS, "does not hold", PAPER_UNCLEAR)

    published = []
    monkeypatch.setattr(report, "_display_raw", published.append)
    report.publish_summary(experiment, results)
    record = published[0][report.SUMMARY_MIME]
    json.dumps(record)  # the book reads it as JSON
    assert record["experiment"] == name and record["seeds"] == [0, 1, 2]
    compared = [r for r in record["rows"] if r["paper"] is not None and r["ours_mean"] is not None]
    assert len(compared) == len(paper)
    assert all(r["ours_std"] == pytest.approx(0.5) for r in compared)
    assert all(r["difference"] == (pytest.approx(0.5) if paper_names else None) for r in compared)
    assert sum(len(c["comparisons"]) for c in record["claims"]) == len(judged)
    assert all(c["word"] and len(k["interval"]) == 2 for c in record["claims"] for k in c["comparisons"])


def test_verdicts_are_counted_per_claim_beside_the_papers():
    experiment = get("table5")
    rows = rows_from_paper(experiment, seeds=(0, 1, 2), rename={"Omniglot": "glyphs"})
    results = results_of(experiment, rows, (DataSpec("g", "glyphs", stands_in_for="Omniglot"),))
    summary = claim_summary(experiment, results).set_index("claim")
    assert summary.loc["RKD-D beats its teacher", "word"] == HOLDS
    assert summary.loc["RKD-D beats its teacher", "summary"] == "4 of 4 comparisons hold"
    assert summary.loc["RKD-D beats its teacher", "paper"] == "4/4"
    assert summary.loc["RKD-DA beats its teacher", "word"] == "mixed"
    assert summary.loc["RKD-DA beats its teacher", "summary"] == "3 of 4 comparisons hold; 1 reversed"
    assert summary.loc["RKD-DA beats its teacher", "paper"] == "3/4"


def test_table1_side_by_side_shows_rows_the_paper_lacks_and_the_teacher_under_the_papers_name():
    experiment = get("table1")
    rows = pd.DataFrame([
        {"dataset": "toy", "run": "teacher", "role": "teacher", "method": "Triplet", "embedding_dim": 512,
         "l2_normalize": "yes", "seed": s, "recall_at_1": 70.0 + s} for s in (0, 1)] + [
        {"dataset": "toy", "run": "RRD d=16 no L2", "role": "student", "method": "RRD", "embedding_dim": 16,
         "l2_normalize": "no", "seed": s, "recall_at_1": 50.0} for s in (0, 1)])
    table = report.side_by_side(experiment.paper(), experiment.keyed(rows), experiment.keys, experiment.metric,
                                stands_in_for={"toy": "Cars196"})
    block = table["toy (for Cars196)"]
    assert block.loc[(512, "Triplet (teacher)", "yes")].tolist() == ["77.17", "70.50 ± 0.71"]
    assert block.loc[(16, "RRD", "no")].tolist() == ["—", "50.00 ± 0.00"]  # the paper has no RRD
    assert block.loc[(128, "RKD-DA", "no")].tolist() == ["82.50", "—"]  # not run here


def test_table3_side_by_side_keeps_the_other_methods_published_rows():
    experiment = get("table3")
    rows = pd.DataFrame([{"dataset": "Cars196", "role": "student", "backbone": "GoogLeNet", "embedding_dim": 512,
                          "method": "RKD-DA", "seed": s, "recall_at_1": 80.0 + s} for s in (0, 1)])
    table = report.side_by_side(experiment.paper(), experiment.keyed(rows), experiment.keys, experiment.metric,
                                stands_in_for={})
    assert table.loc[("GoogLeNet", 512, "ABE8"), "Cars196"].tolist() == ["85.20", "—", "—"]  # the paper's data
    assert table.loc[("GoogLeNet", 512, "RKD-DA"), "Cars196"].tolist() == ["82.30", "80.50 ± 0.71", "-1.80"]


# ------------------------------------------------------------------ claims on our numbers


def test_table2_claims_select_generations_and_pair_them_by_seed():
    experiment = get("table2")
    # generation 2 beats generation 1 by 1 point on every seed: equivalent within 2 points, far from it within 0.5
    values = {0: [50, 51, 49, 50, 52], 1: [55, 57, 54, 56, 55], 2: [56, 58, 55, 57, 56], 3: [58, 61, 57, 59, 60]}
    rows = pd.DataFrame([{"dataset": "toy", "generation": g, "seed": s, "recall_at_1": float(v)}
                         for g, per_seed in values.items() for s, v in enumerate(per_seed)])
    judged = judge(experiment.claims(rows), rows, "recall_at_1").set_index("comparison")
    assert judged.loc["generation 1 > generation 0", "verdict"] == HOLDS
    assert judged.loc["generation 1 > generation 0", "role"] == "primary"
    assert judged.loc["generation 2 ≈ generation 1 (±2)", "verdict"] == "equivalent"
    assert judged.loc["generation 3 ≈ generation 1 (±2)", "verdict"] == "not equivalent"  # 3 points better


def test_table1_claims_on_ours_judge_only_the_sizes_and_methods_that_ran():
    experiment = get("table1")
    rows = []
    for seed in (0, 1, 2):
        rows.append({"dataset": "toy", "role": "teacher", "method": "Triplet", "embedding_dim": 512,
                     "l2_normalize": "yes", "seed": seed, "recall_at_1": 60.0 + seed})
        rows.append({"dataset": "toy", "role": "initial", "method": "—", "embedding_dim": 512,
                     "l2_normalize": "yes", "seed": seed, "recall_at_1": 30.0 + seed})
        for method, l2, value in (("Triplet", "yes", 40.0), ("RKD-DA", "yes", 45.0), ("RKD-DA", "no", 61.0)):
            rows.append({"dataset": "toy", "role": "student", "method": method, "embedding_dim": 16,
                         "l2_normalize": l2, "seed": seed, "recall_at_1": value + seed})
    rows = pd.DataFrame(rows)
    keyed = experiment.keyed(rows)
    judged = judge(experiment.claims(keyed), keyed, "recall_at_1").set_index("comparison")
    assert set(judged.index) == {"RKD-DA d=16 L2 > Triplet d=16 L2", "RKD-DA d=16 no L2 > RKD-DA d=16 L2",
                                 "RKD-DA d=16 no L2 > Triplet (teacher)", "Triplet (teacher) > initial model"}
    assert (judged["verdict"] == HOLDS).all()
    assert judged.loc["RKD-DA d=16 L2 > Triplet d=16 L2", "role"] == "primary"


# ------------------------------------------------------------------ presets follow the paper


def plan(name, **params) -> pd.DataFrame:
    return get(name).plan("paper", **params).set_index(["dataset", "run"])


def test_table1_paper_preset_follows_the_protocol():
    p = plan("table1")
    assert list(dict.fromkeys(p.index.get_level_values("dataset"))) == ["CUB-200-2011", "Cars196"]
    teacher = p.loc[("CUB-200-2011", "teacher")]
    # (code) teacher: 40 x 100 iterations of Adam 1e-5, x0.5 at epochs 25, 30, 35
    assert (teacher["network"], teacher["embedding"], teacher["L2"]) == ("resnet50 (pretrained)", 512, "yes")
    assert (teacher["optimiser"], teacher["lr"], teacher["steps"], teacher["milestones"], teacher["gamma"]) == (
        "adam", 1e-5, 4000, "2500, 3000, 3500", 0.5)
    # (code) students: 80 x 100 iterations of Adam 1e-4, x0.1 at epochs 40 and 60
    students = p[p["role"] == "student"]
    assert set(students["network"]) == {"resnet18 (pretrained)"}
    assert set(students["steps"]) == {8000} and set(students["milestones"]) == {"4000, 6000"}
    assert set(students["lr"]) == {1e-4} and set(students["gamma"]) == {0.1}
    assert sorted(set(students["embedding"])) == [16, 32, 64, 128]
    assert set(p["batch"]) - {"—"} == {"25 classes x 5 images + 3, 100 per epoch, fill_with_partial_class=True"}
    assert set(p["evaluation"]) == {"Recall@1,2,4,8"} and set(p["image size"]) == {224}
    # the L2 settings the paper reports per method; FitNet in two stages
    cub = p.loc["CUB-200-2011"]
    for method, settings in table1.L2_SETTINGS.items():
        runs = cub[cub["method"].str.startswith(method + " ") | (cub["method"] == method)]
        runs = runs[runs["role"] == "student"]
        assert sorted(set(runs["L2"])) == sorted("yes" if l2 else "no" for l2 in settings), method
    runs_per_size = 1 + sum(map(len, table1.L2_SETTINGS.values()))
    assert len(cub[cub["role"] == "hint"]) == 4 and len(p) == 2 * (2 + 4 * runs_per_size)


def test_table2_and_table3_paper_presets_follow_the_protocol():
    p = plan("table2")
    assert list(dict.fromkeys(p.index.get_level_values("dataset"))) == ["CUB-200-2011", "Cars196", "SOP"]
    generations = p[p["role"] == "generation"]
    # self-distillation: ResNet50-512 students of RKD-DA without L2, each taught by the one before
    assert set(generations["network"]) == {"resnet50 (pretrained)"} and set(generations["embedding"]) == {512}
    assert set(generations["method"]) == {"RKD-DA"} and set(generations["L2"]) == {"no"}
    assert p.loc[("Cars196", "generation 3"), "teacher"] == "generation 2"
    assert p.loc[("Cars196", "generation 1"), "teacher"] == "teacher"
    sop = p.loc["SOP"]
    assert set(sop["evaluation"]) == {"Recall@1,10,100,1000"}
    assert all(b.endswith("small_classes=take_all") for b in sop["batch"])  # SOP classes hold 2-12 images
    assert set(p.loc["CUB-200-2011", "evaluation"]) == {"Recall@1,2,4,8"}

    p = plan("table3")
    cars = p.loc["Cars196"]
    assert [(r, cars.loc[r, "network"], cars.loc[r, "embedding"]) for r in cars.index[1:]] == [
        ("GoogLeNet-128", "googlenet (pretrained)", 128), ("GoogLeNet-512", "googlenet (pretrained)", 512),
        ("ResNet50-128", "resnet50 (pretrained)", 128)]
    assert set(cars["method"][1:]) == {"RKD-DA"} and set(cars["L2"][1:]) == {"no"}
    assert set(cars["teacher"][1:]) == {"teacher"} and cars.loc["teacher", "embedding"] == 512
    assert set(p.loc["SOP", "evaluation"]) == {"Recall@1,10,100,1000"}


def test_table4_sgd_schedule_in_steps():
    config = table4.sgd_schedule(epochs=200, milestones=(60, 120, 160), steps_per_epoch=390)
    assert (config.steps, config.optimizer, config.lr, config.momentum, config.weight_decay, config.milestones,
            config.gamma) == (78_000, "sgd", 0.1, 0.9, 5e-4, (23_400, 46_800, 62_400), 0.2)
    short = table4.compressed(300)
    assert short.steps == 300 and short.milestones == (90, 180, 240) and short.gamma == 0.2 and short.lr == 0.1


def test_table4_paper_preset_is_the_papers_protocol():
    cifar, tiny = table4.PAPER_SETUPS
    assert (cifar.data.name, cifar.teacher.name, cifar.student.name) == ("cifar100", "resnet50_cls", "vgg11_bn_cls")
    assert (tiny.data.name, tiny.teacher.name, tiny.student.name) == ("tiny_imagenet", "resnet101_cls",
                                                                      "resnet18_cls")
    assert cifar.train == table4.sgd_schedule(epochs=200, milestones=(60, 120, 160), steps_per_epoch=50_000 // 128)
    assert tiny.train == table4.sgd_schedule(epochs=300, milestones=(60, 120, 160, 200, 250),
                                             steps_per_epoch=100_000 // 128)
    assert cifar.batch_size == tiny.batch_size == 128
    p = plan("table4")
    teacher, baseline = p.loc[("CIFAR-100", "teacher")], p.loc[("CIFAR-100", "Baseline")]
    assert teacher["steps"] == baseline["steps"] == 78_000  # the teacher trains as the students do
    assert teacher["milestones"] == "23400, 46800, 62400" and teacher["batch"] == "128 random images"
    assert p.loc[("Tiny ImageNet", "teacher"), "steps"] == 234_300
    assert set(p.loc["CIFAR-100", "image size"]) == {32} and set(p.loc["Tiny ImageNet", "image size"]) == {64}
    assert set(p["starts from"]) <= {"random init", "FitNet (hint stage)", "FitNet+RKD-DA (hint stage)"}
    assert baseline["teacher"] == "—" and p.loc[("CIFAR-100", "HKD"), "teacher"] == "teacher"
    assert table4.STUDENTS[:len(table4.PAPER_STUDENTS)] == table4.PAPER_STUDENTS
    assert set(table4.STUDENTS) - set(table4.PAPER_STUDENTS) == {"RRD", "RRD+HKD"}


def test_fewshot_paper_presets_follow_snell_et_al():
    omniglot, mini = table5.PAPER, table6.PAPER
    assert omniglot.train_way == {1: 60, 5: 60} and omniglot.train_query == 5
    assert omniglot.test_ways == (5, 20) and omniglot.test_episodes == 1000 and omniglot.test_query == 15
    assert mini.train_way == {1: 30, 5: 20} and mini.train_query == 15  # 30-way 1-shot, 20-way 5-shot
    assert mini.test_ways == (5,) and mini.test_episodes == 600 and mini.test_query == 15
    for recipe in (omniglot, mini):
        train = recipe.train
        assert (train.optimizer, train.lr, train.gamma) == ("adam", 1e-3, 0.5)
        assert train.milestones == tuple(range(2000, train.steps, 2000))  # halved every 2,000 episodes
        assert recipe.network.name == "conv4" and dict(recipe.network.options)["hidden_channels"] == 64
    assert dict(mini.network.options)["input_size"] == 84 and dict(omniglot.network.options)["input_size"] == 28
    p = plan("table6")
    assert p.loc[("miniImageNet", "RKD-DA (1-shot)"), "batch"] == "30-way 1-shot, 15 queries per class, 100 per epoch"
    assert p.loc[("miniImageNet", "RKD-DA (5-shot)"), "evaluation"] == "600 episodes of 5-way 5-shot, 15 queries"
    assert p.loc[("miniImageNet", "RKD-DA (5-shot)"), "teacher"] == "Teacher (5-shot)"  # one teacher per shot
    p = plan("table5")
    assert p.loc[("Omniglot", "Teacher (1-shot)"), "evaluation"] == "1000 episodes of 5-way, 20-way 1-shot, 15 queries"
    assert p.loc[("Omniglot", "Teacher (5-shot)"), "batch"] == "60-way 5-shot, 5 queries per class, 100 per epoch"


def test_fewshot_stand_in_schedules_table5_6000_episodes_table6_1500_teachers_as_long_as_students():
    def schedules(name, scale):
        return {run.name: (run.train.steps, run.train.milestones, run.evaluation.every)
                for run in resolve_runs(get(name), scale=scale).runs}

    omniglot, mini = schedules("table5", "converged"), schedules("table6", "converged")
    omniglot_ci = schedules("table5", "ci")
    for shot in (1, 5):
        # at 1,500 episodes Table 5's 1-shot teacher was still climbing; Table 6's teachers settle there
        assert omniglot[f"Teacher ({shot}-shot)"] == omniglot[f"RKD-DA ({shot}-shot)"] == (6000, (2000, 4000), 600)
        assert mini[f"Teacher ({shot}-shot)"] == mini[f"Attention ({shot}-shot)"] == (1500, (500, 1000), 150)
        assert omniglot_ci[f"Teacher ({shot}-shot)"][0] == 600  # ci cuts the converged schedule 10-fold


def test_fewshot_methods_carry_the_papers_weights_and_the_ci_attention_blocks():
    def methods(name, scale):
        return {run.name: method_of(run) for run in resolve_runs(get(name), scale=scale).runs}

    paper = methods("table6", "paper")
    assert paper["RKD-D (1-shot)"].stages[0].terms == {"prototypical": 1.0, "rkd_distance": 50.0}
    assert paper["RKD-DA (5-shot)"].stages[0].terms == {"prototypical": 1.0, "rkd_distance": 25.0, "rkd_angle": 50.0}
    assert paper["Attention (1-shot)"].options_for("attention")["blocks"] == ("block4",)
    assert paper["Attention (1-shot)"].stages[0].terms["attention"] == 10.0
    # at 28x28 the last block's map is 1x1, where attention is undefined: blocks 2 and 3
    assert methods("table6", "ci")["Attention (1-shot)"].options_for("attention")["blocks"] == ("block2", "block3")


def test_figure_presets_follow_the_paper():
    p = plan("figure3")
    assert list(dict.fromkeys(p.index.get_level_values("dataset"))) == ["Cars196"]  # trained on Cars196 only
    assert set(p["evaluation"]) == {"Recall@1,2,4,8 on CUB-200-2011, Stanford Dogs, CIFAR-100 too"}
    student = p.loc[("Cars196", "student (RKD-DA)")]
    assert (student["network"], student["embedding"], student["L2"], student["teacher"]) == (
        "resnet18 (pretrained)", 128, "no", "teacher")
    assert [r for r in p.loc["Cars196"].index] == list(figure3.MODELS[:2]) + ["teacher", "student (RKD-DA)"]
    p = plan("figure4")
    assert set(p["network"]) == {"resnet50 (pretrained)", "resnet18 (pretrained)"}
    assert p.loc[("CUB-200-2011", figure4.STUDENT), "embedding"] == 128
    assert set(get("figure4").keep_models) == {"teacher", figure4.STUDENT}


def test_every_paper_network_starts_from_imagenet_weights_except_tables_4_to_6():
    for name in names():
        p = get(name).plan("paper")
        pretrained = p["network"].str.endswith("(pretrained)")
        assert pretrained.all() if name not in ("table4", "table5", "table6") else not pretrained.any(), name


# ------------------------------------------------------------------ Figure 3


def figure3_rows(student_other: float) -> pd.DataFrame:
    rows = []
    values = {"initial model (teacher's network)": (30.0, 45.0), "initial model (student's network)": (28.0, 40.0),
              "teacher (Triplet)": (70.0, 50.0), "student (RKD-DA)": (80.0, student_other)}
    for seed in (0, 1, 2):
        for model, (own, other) in values.items():
            for evaluated_on, value in (("cars", own), ("cub", other), ("digits", other - 5)):
                rows.append({"dataset": "cars", "evaluated_on": evaluated_on, "model": model, "seed": seed,
                             "recall_at_1": value + seed * (1 if model == "student (RKD-DA)" else 0.5),
                             "scale": "ci"})
    return pd.DataFrame(rows)


def test_figure3_judges_each_test_set_as_its_own_domain():
    experiment = get("figure3")
    keyed = experiment.keyed(figure3_rows(student_other=20.0))
    assert set(zip(keyed["dataset"], keyed["domain"])) == {("cars", "training"), ("cub", "other"),
                                                           ("digits", "other")}
    judged = judge(experiment.claims(keyed), keyed, "recall_at_1")
    training = judged[judged["claim"] == "on its training domain the student beats the teacher"]
    assert training["dataset"].tolist() == ["cars"] and training["verdict"].tolist() == [HOLDS]
    other = judged[judged["claim"] != "on its training domain the student beats the teacher"]
    assert sorted(other["dataset"]) == ["cub", "cub", "digits", "digits"] and (other["verdict"] == HOLDS).all()
    # a student that carries over: the teacher no longer wins elsewhere
    keyed = experiment.keyed(figure3_rows(student_other=60.0))
    judged = judge(experiment.claims(keyed), keyed, "recall_at_1")
    assert set(judged.loc[judged["claim"] == "on other domains the teacher beats the student", "verdict"]) == {
        REVERSED}
    figure = experiment.plot(keyed)
    assert figure is not None and "training domain is cars" in figure.axes[0].get_title()


def test_figure3_reads_its_ci_domains_at_the_training_images_size():
    preset = get("figure3").preset("ci")
    train = preset.datasets[0]
    assert all(d.image_size == train.image_size == 28 for d in preset.grid["domains"])
    for domain in preset.grid["domains"]:
        if domain.name.startswith("glyphs"):
            continue  # rendered, 28x28 by construction (test_glyphs.py); rendering here would cost seconds
        image, _ = load_split(domain, None, "test", train=False)[0]
        assert image.shape == (1, 28, 28), domain.name


# ------------------------------------------------------------------ Figure 4


class Projection(torch.nn.Module):
    """A fixed random projection of the pixels: a model whose retrievals are neither
    perfect nor random."""

    def __init__(self, seed: int, dim: int = 6):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(28 * 28, dim, generator=generator))

    def forward(self, x):
        return {"embedding": x.flatten(1) @ self.weight}


def figure4_results(queries_seed: int = 0) -> Results:
    data = replace(DIGITS, max_test_per_class=12)
    results = Results(experiment="figure4", scale="ci", protocol="authors_code", seeds=(queries_seed,),
                      rows=pd.DataFrame(), plan=pd.DataFrame(), datasets=(data,))
    models = {f"{data.display}/teacher": Projection(1), f"{data.display}/{figure4.STUDENT}": Projection(2)}
    get("figure4").analyse(results, models)
    return results


def test_figure4_retrievals_of_both_selections():
    results = figure4_results()
    retrievals, head = results.extra["retrievals"], results.extra["head_to_head"]
    test_set = load_split(replace(DIGITS, max_test_per_class=12), None, "test", train=False)
    labels = torch.as_tensor(test_set.targets)
    shown = get("figure4").preset("ci").grid["queries"]
    for selection in figure4.SELECTIONS:
        chosen = retrievals[retrievals["selection"] == selection]
        assert len(chosen) == 2 * shown and set(chosen["model"]) == {"teacher", "student"}
        assert chosen["query"].nunique() == shown
    for _, row in retrievals.iterrows():
        assert len(row["neighbours"]) == figure4.TOP_K and row["query"] not in row["neighbours"]
        assert list(row["hits"]) == [bool(labels[n] == labels[row["query"]]) for n in row["neighbours"]]
    # the paper's selection: queries where the student has more hits than the teacher
    better = retrievals[retrievals["selection"] == figure4.SELECTIONS[1]]
    hits = better.assign(n=better["hits"].map(sum)).pivot(index="query", columns="model", values="n")
    assert (hits["student"] > hits["teacher"]).all()
    shares = head[["student more hits (%)", "same (%)", "teacher more hits (%)"]].sum(axis=1)
    assert shares.tolist() == [pytest.approx(100.0)]
    # seeded: the same queries again, others with another seed
    assert figure4_results().extra["retrievals"].equals(retrievals)
    random_queries = set(retrievals.loc[retrievals["selection"] == figure4.SELECTIONS[0], "query"])
    other = figure4_results(queries_seed=5).extra["retrievals"]
    assert set(other.loc[other["selection"] == figure4.SELECTIONS[0], "query"]) != random_queries


def test_figure4_draws_one_figure_per_selection(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    preset = get("figure4").preset("ci")
    shown = 2  # fewer queries than the preset's, to draw fewer axes
    monkeypatch.setitem(figure4.Figure4.presets, "ci", replace(preset, grid={**preset.grid, "queries": shown}))
    results = figure4_results()
    figures = get("figure4").figure(results)
    assert len(figures) == 2
    assert all(len(f.axes) == 2 * shown * (1 + figure4.TOP_K) for f in figures)


# ------------------------------------------------------------------ bad names and parameters


def test_unknown_experiment_scale_method_and_dataset_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r"unknown experiment 'table7'; valid names: figure3, figure4, table1"):
        get("table7")
    for name in names():
        with pytest.raises(ValueError,
                           match=rf"unknown scale 'huge' for {get(name).title}; valid scales: ci, converged, paper"):
            get(name).plan("huge")
    with pytest.raises(ValueError, match=r"unknown Table 1 method\(s\) \['RKD'\]; valid: Triplet, FitNet"):
        get("table1").plan(methods=("RKD",))
    for name in ("table4", "table5", "table6"):
        with pytest.raises(ValueError, match=r"unknown Table \d method\(s\) \['RKD-Z'\]; valid: .*RKD-DA"):
            get(name).plan(methods=["RKD-Z"])
    with pytest.raises(ValueError, match=r"\['cub200'\] are not part of Table 1 at this scale; valid: "
                                         r"\['glyphs_cars', 'glyphs_cub'\]"):
        get("table1").plan("ci", datasets=("cub200",))
    with pytest.raises(ValueError, match=r"not part of Table 4 at this scale; valid: \['cifar100', 'tiny_imagenet'\]"):
        get("table4").plan("paper", datasets=["cifar10"])
    with pytest.raises(ValueError, match="not part of Table 2"):
        get("table2").plan("ci", datasets=("sop",))
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match=r"generations must be a positive int \(the paper trains 3\)"):
            get("table2").plan(generations=bad)


def test_every_notebooks_parameters_cell_is_accepted_by_its_experiment():
    for name, page in PAGES.items():
        notebook = json.loads((NOTEBOOKS / page).read_text())
        cell = next(c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", []))
        namespace: dict = {}
        exec("".join(cell["source"]), namespace)
        namespace.pop("__builtins__")
        params = notebook_parameters(namespace, name)
        assert set(params) == set(namespace) and params["scale"] == "ci", name
        # and what the dry-run test passes, as papermill passes it (lists)
        assert notebook_parameters({**namespace, "seeds": [0, 1], "scale": "paper", "dry_run": True}, name)[
            "seeds"] == (0, 1)


# ------------------------------------------------------------------ the runner's checks before training


def test_dry_runs_answer_only_the_ks_a_small_test_set_can():
    assert feasible_ks((1, 10, 100, 1000), 12) == (1, 10)
    with pytest.raises(ValueError, match="answers no K"):
        feasible_ks((2,), 2)


@pytest.fixture
def nothing_is_built(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the data were checked")

    monkeypatch.setattr(training_module, "build_model", refuse)
    monkeypatch.setattr(training_module, "fit", refuse)


def test_missing_data_fail_before_any_model_is_built_or_downloaded(tmp_path, nothing_is_built):
    with pytest.raises(DatasetLayoutError,
                       match=r"cub200 +NOT READY .*CUB_200_2011 not found(.|\n)*python -m rkd.data check"):
        get("table1").run(scale="paper", data_root=str(tmp_path / "missing"), progress=False,
                          cache_dir=str(tmp_path / "cache"))


def test_episodes_a_split_cannot_hold_fail_before_training_and_say_why(tmp_path, nothing_is_built, monkeypatch):
    # past the check of the whole data root (a generated tree has not the official counts)
    monkeypatch.setattr(runner_module, "_check_data_root", lambda *args, **kwargs: None)
    make_omniglot_tree(tmp_path / "omniglot", images_per_character=21, size=8)  # 1-shot + 20 queries fit
    # the paper's 60-way training episodes need 60 classes; the generated tree has 24
    with pytest.raises(ValueError, match=r"n_way=60 but the labels hold only 24 classes"):
        get("table5").run(scale="paper", data_root=str(tmp_path), progress=False, cache_dir=str(tmp_path / "c"))


def test_a_dry_run_prints_the_plan_of_the_full_run(tmp_path, capsys, monkeypatch):
    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(jobs_module.DataCatalog, "check", stop)
    with pytest.raises(Stop):
        get("table2").run(scale="paper", datasets=("sop",), generations=1, dry_run=True, progress=False)
    printed = capsys.readouterr().out
    # generation 1 and its control (the teacher trained on for the same steps), after the teacher
    assert "3 runs x 3 seed(s), 480,000 optimiser steps in a full run" in printed
    assert "40000" in printed and "60000" in printed and "small_classes=take_all" in printed
    dry = resolve_runs(get("table2"), scale="paper", datasets=("sop",), generations=1, dry_run=True)
    assert {run.train.steps for run in dry.runs} == {DRY_RUN.steps}  # what it then trains
    assert isinstance(dry.runs[0].train, TrainConfig)


def test_page_figures_are_palette_pngs_of_the_rendered_size():
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(4, 3), dpi=50)
    for i in range(12):
        ax.plot([0, 1], [i, i + 1], label=str(i))
    ax.legend()
    full = io.BytesIO()
    fig.savefig(full, format="png", bbox_inches="tight", facecolor="white")
    compact = report.compact_png(fig)
    plt.close(fig)
    image = Image.open(io.BytesIO(compact))
    assert image.mode == "P" and image.size == Image.open(full).size
    assert len(compact) < len(full.getvalue())


@pytest.mark.parametrize("document", ["book/reproduce.md", "README.md"])
def test_the_documented_costs_are_the_plans(document):
    """The cost table of the 'Reproducing a table' page and of the README says what plan() computes."""

    page = (Path(__file__).parent.parent / document).read_text()
    found = {}
    for title, runs, images, hours in re.findall(r"^\| (Table \d|Figure \d) \| (\d+) \| ([\d,]+) \| (\d+) \|", page,
                                                 re.MULTILINE):
        found[title] = (int(runs), int(images.replace(",", "")), int(hours))
    assert len(found) == 8
    for name in names():
        experiment = get(name)
        plan = experiment.plan(scale="paper", throughput=1000)
        expected = (len(plan), int(plan["images, all seeds"].sum()), round(plan["GPU-hours at 1000 img/s"].sum()))
        assert found[experiment.title] == expected, experiment.title


@pytest.mark.parametrize("name", list(names()))
def test_ci_is_the_converged_regime_cut_for_make_test(name):
    from rkd.experiments import table1
    from rkd.experiments.recipes import CI_CUT, CI_EVALUATION_CUT, CI_SEEDS, CONVERGED
    from rkd.runs.plan import resolve_runs

    # the metric-learning pages' converged schedules are twice the others', and so is their cut
    cut = table1.METRIC_CI_CUT if name in ("table1", "table2", "table3", "figure3", "figure4") else CI_CUT

    ci, converged = (resolve_runs(get(name), scale=scale) for scale in ("ci", CONVERGED))
    assert ci.seeds == CI_SEEDS and len(converged.seeds) >= 5
    assert [r.name for r in ci.runs] == [r.name for r in converged.runs]
    for short, full in zip(ci.runs, converged.runs):
        assert (short.method, short.teacher, short.network, short.data) == (full.method, full.teacher, full.network,
                                                                            full.data)
        if full.role == "pretrain":  # the trunks are shared: the students of both regimes start from them
            assert short == full
        elif full.trains:
            assert short.train.steps == full.train.steps // cut and short.train.lr == full.train.lr
            assert all(m < short.train.steps for m in short.train.milestones)
            assert short.evaluation.every == full.evaluation.every // CI_EVALUATION_CUT
    assert f"cut {cut}-fold" in get(name).preset("ci").notes


def test_figure4_head_to_head_is_converged_only_where_both_models_are():
    from rkd.runs.convergence import jointly_converged

    assert [jointly_converged(*states) for states in ((True, True), (True, False), (None, True), (True, None))] == \
        [True, False, None, None]
    rows = pd.DataFrame([
        {"dataset": "d", "model": "teacher", "seed": 0, "recall_at_1": 77.0, "converged": False},
        {"dataset": "d", "model": "student", "seed": 0, "recall_at_1": 72.0, "converged": True,
         "queries_student_ahead": 10.0, "queries_teacher_ahead": 30.0},
    ])
    derived = get("figure4").with_derived(rows, "recall_at_1")
    ahead = derived[derived["model"].isin([figure4.STUDENT_AHEAD, figure4.TEACHER_AHEAD])]
    assert len(ahead) == 2 and list(ahead["converged"]) == [False, False]  # the teacher was still rising
    assert derived.loc[derived["model"] == "student", "converged"].item() is True
