"""Dry runs of the paper presets of Tables 2-3 and Figures 3-4 on generated trees in the
official layouts: the plan is printed, then every model trains two steps on the CPU with
the paper's networks, image sizes, losses and readers (no pretrained weights)."""
import sys
from pathlib import Path

import pytest

from rkd.experiments import figure3, figure4, table2, table3

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_data import (  # noqa: E402
    make_cars196_tree,
    make_cifar100_tree,
    make_cub200_tree,
    make_sop_tree,
    make_stanford_dogs_tree,
)

pytestmark = pytest.mark.slow


def test_table2_dry_run_on_sop(tmp_path, capsys):
    # SOP is the dataset with its own Ks, sampler policy and student schedule; its
    # classes hold 2 images, fewer than the 5 per class of a batch
    make_sop_tree(tmp_path, num_train_classes=5, num_test_classes=3, images_per_class=2)
    results = table2.run(scale="paper", data_root=str(tmp_path), datasets=("sop",), generations=2,
                         progress=False, dry_run=True)
    printed = capsys.readouterr().out
    assert "12000 steps each" in printed and "Recall@1,10,100,1000" in printed
    assert list(results["generation"]) == [0, 1, 2]
    assert list(results["taught_by"].fillna(-1)) == [-1, 0, 1] and str(results["taught_by"].dtype) == "Int64"
    assert list(results["l2_normalize"]) == ["yes", "no", "no"]
    assert set(results["scale"]) == {"paper (dry run)"}
    # six test images answer K = 1 only; the plan still says what the full run measures
    assert results["recall_at_1"].between(0, 100).all() and "recall_at_10" not in results


def test_table3_dry_run_on_cub(tmp_path, capsys):
    make_cub200_tree(tmp_path, num_classes=4, images_per_class=5)
    results = table3.run(scale="paper", data_root=str(tmp_path), datasets=("cub200",), progress=False, dry_run=True)
    printed = capsys.readouterr().out
    assert "`googlenet-128` (as GoogLeNet-128)" in printed and "8000 steps each" in printed
    assert list(zip(results["model"], results["embedding_dim"])) == [
        ("resnet50", 512), ("googlenet", 128), ("googlenet", 512), ("resnet50", 128)]
    assert results[[f"recall_at_{k}" for k in (1, 2, 4, 8)]].notna().all().all()


def test_figure3_dry_run_on_every_domain(tmp_path, capsys):
    make_cars196_tree(tmp_path / "cars196", num_classes=4, images_per_class=5)
    make_cub200_tree(tmp_path, num_classes=4, images_per_class=3)
    make_stanford_dogs_tree(tmp_path / "stanford_dogs", num_classes=3, train_per_class=1, test_per_class=3)
    make_cifar100_tree(tmp_path, train_per_class=1, test_per_class=2, num_classes=5)
    results = figure3.run(scale="paper", data_root=str(tmp_path), progress=False, dry_run=True)
    printed = capsys.readouterr().out
    assert "CUB-200-2011, Stanford Dogs, CIFAR-100" in printed
    assert list(results["dataset"].unique()) == ["Cars196", "CUB-200-2011", "Stanford Dogs", "CIFAR-100"]
    assert list(results["domain"].unique()) == ["training", "other"]
    assert len(results) == 4 * len(figure3.MODELS)
    assert results["recall_at_1"].between(0, 100).all()
    assert set(figure3.claims(results)["ours"].iloc[:, 0]) <= {f"{i}/{n}" for n in (1, 3) for i in range(n + 1)}


def test_figure4_dry_run_on_cub(tmp_path, capsys):
    make_cub200_tree(tmp_path, num_classes=4, images_per_class=5)
    results = figure4.run(scale="paper", data_root=str(tmp_path), datasets=("cub200",), num_queries=2,
                          progress=False, dry_run=True)
    assert "top-8 neighbours" in capsys.readouterr().out
    random = results[results["selection"] == figure4.SELECTIONS[0]]
    assert len(random) == 2 * 2  # two queries, teacher and student
    assert all(len(n) == 8 and q not in n for n, q in zip(random["neighbours"], random["query"]))
    assert random["hits"].between(0, 8).all() and random["query_class_name"].str.len().gt(0).all()
    figure = figure4.plot(results, data_root=str(tmp_path))
    assert len(figure.axes) == 4 * 9
