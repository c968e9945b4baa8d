"""Dry runs of Tables 4, 5 and 6 at paper scale on generated official-layout trees: the
plan of the full run is printed, then every model and method trains for two steps on the
CPU with the paper preset's data readers, transforms, image sizes, models and losses."""
import math

import pytest
from fixtures_data import make_cifar100_tree, make_mini_imagenet_tree, make_omniglot_tree, make_tiny_imagenet_tree

from rkd.experiments import table4, table5, table6

pytestmark = pytest.mark.slow


def _check_rows(results, expected_rows, value):
    assert len(results) == expected_rows
    assert set(results["scale"]) == {"paper (dry run)"}
    assert all(math.isfinite(v) and 0.0 <= v <= 100.0 for v in results[value])


def test_table4_cifar100_dry_run(tmp_path, capsys):
    make_cifar100_tree(tmp_path, train_per_class=1, test_per_class=1)
    results = table4.run(scale="paper", data_root=str(tmp_path), datasets=["cifar100"], progress=False, dry_run=True)
    plan = capsys.readouterr().out
    # 200 epochs of 50,000 // 128 = 390 steps, lr x0.2 at epochs 60, 120, 160
    assert "78,000 steps of batch 128" in plan and "23,400, 46,800, 62,400" in plan
    _check_rows(results, 1 + len(table4.METHODS), "top1")
    assert list(results["method"]) == ["Teacher", *table4.METHODS]
    assert set(results["model"]) == {"resnet50_cls", "vgg11_bn_cls"}


def test_table4_tiny_imagenet_dry_run(tmp_path, capsys):
    make_tiny_imagenet_tree(tmp_path, num_classes=3, train_per_class=2, val_per_class=1)
    results = table4.run(scale="paper", data_root=str(tmp_path), datasets=["tiny_imagenet"], progress=False,
                         dry_run=True)
    plan = capsys.readouterr().out
    assert "300 epochs = 234,300 steps of batch 128" in plan  # 100,000 // 128 = 781 steps per epoch
    _check_rows(results, 1 + len(table4.METHODS), "top1")
    assert set(results["model"]) == {"resnet101_cls", "resnet18_cls"}


def test_table5_omniglot_dry_run(tmp_path, capsys):
    make_omniglot_tree(tmp_path / "omniglot", images_per_character=6)  # 5-shot + 1 query per class
    results = table5.run(scale="paper", data_root=str(tmp_path), progress=False, dry_run=True)
    plan = capsys.readouterr().out
    assert "60-way 1-shot episodes with 5 queries" in plan and "60-way 5-shot" in plan
    assert "1000 episodes of each of 5-way, 20-way" in plan
    # per shot (1, 5): teacher + 2 students, each tested at one (dry-run) way
    _check_rows(results, 2 * (1 + len(table5.METHODS)), "accuracy")
    assert sorted(set(results["shot"])) == [1, 5]


def test_table6_mini_imagenet_dry_run(tmp_path, capsys):
    make_mini_imagenet_tree(tmp_path / "mini_imagenet", classes_per_split=(3, 2, 2), images_per_class=6)
    results = table6.run(scale="paper", data_root=str(tmp_path), progress=False, dry_run=True)
    plan = capsys.readouterr().out
    assert "30-way 1-shot episodes with 15 queries" in plan and "20-way 5-shot episodes" in plan
    assert "600 episodes of each of 5-way" in plan
    _check_rows(results, 2 * (1 + len(table6.METHODS)), "accuracy")
    assert list(results["method"][:5]) == ["Teacher", *table6.METHODS]
