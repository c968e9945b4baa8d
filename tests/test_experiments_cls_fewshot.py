"""Tables 4, 5 and 6: the machinery (rotation classes, episode evaluation, schedules),
the paper presets' protocol, the claims computed from numbers, and short ci-scale runs."""
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from rkd.data.samplers import EpisodeSampler
from rkd.experiments import notebook_parameters, summarize_claims, table4, table5, table6
from rkd.experiments.classification import compressed_schedule, sgd_schedule
from rkd.experiments.fewshot import (
    CachedImages,
    RotationClasses,
    _check_feasible,
    episode_accuracies,
    fewshot_method,
)
from rkd.losses.fewshot import episode_accuracy
from rkd.train import TrainConfig

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not any(FASHION_MNIST.glob("train-images-idx3-ubyte*")), reason="Fashion-MNIST not installed (dataset-fashion-mnist)"
)


class _Toy(torch.utils.data.Dataset):
    """Two classes of three 1x2x3 images; image i holds the values 10*i .. 10*i + 5."""

    def __init__(self):
        self.images = torch.arange(6 * 6, dtype=torch.float32).view(6, 1, 2, 3) + 4 * torch.arange(6).view(6, 1, 1, 1)
        self.targets = torch.tensor([0, 0, 0, 1, 1, 1])
        self.classes = ["a", "b"]

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return self.images[i], int(self.targets[i])


# ------------------------------------------------------------------ rotation classes, cache


def test_rotation_classes_make_each_class_and_angle_a_class():
    base = _Toy()
    rotated = RotationClasses(base, (0, 90, 180, 270))
    assert len(rotated) == 24 and rotated.num_classes == 8
    assert rotated.classes[:4] == ["a/rot000", "a/rot090", "a/rot180", "a/rot270"]
    for index in range(24):
        copy, base_index = divmod(index, 6)
        image, target = rotated[index]
        assert target == int(base.targets[base_index]) * 4 + copy == int(rotated.targets[index])
        expected = torch.rot90(base.images[base_index], k=copy, dims=(-2, -1))  # counter-clockwise
        assert torch.equal(image, expected)
    # a quarter turn counter-clockwise moves the top-right pixel to the top-left
    image, _ = rotated[6]
    assert image.shape == (1, 3, 2) and image[0, 0, 0] == base.images[0][0, 0, 2]


def test_rotation_classes_refuse_other_angles_and_pil_images():
    with pytest.raises(ValueError, match="multiples of 90"):
        RotationClasses(_Toy(), (0, 45))
    with pytest.raises(ValueError, match="distinct"):
        RotationClasses(_Toy(), (0, 360))

    class _Pil(_Toy):
        def __getitem__(self, i):
            return "not a tensor", 0

    with pytest.raises(TypeError, match="tensor images"):
        RotationClasses(_Pil(), (0, 90))[0]


def test_cached_images_hold_what_the_dataset_returns():
    base = RotationClasses(_Toy(), (0, 180))
    cached = CachedImages(base)
    assert len(cached) == len(base) and cached.num_classes == 4
    for i in range(len(base)):
        assert torch.equal(cached[i][0], base[i][0]) and cached[i][1] == base[i][1]


# ------------------------------------------------------------------ episode evaluation


def test_episode_accuracies_match_the_prototypical_classifier_episode_by_episode():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(12)
    embeddings = torch.randn(len(labels), 5, generator=generator) + 0.8 * torch.nn.functional.one_hot(labels % 5, 5)
    values = episode_accuracies(embeddings, labels, n_way=4, k_shot=2, n_query=3, episodes=20, seed=7)
    assert values.shape == (20,)
    sampler = EpisodeSampler(labels, 4, 2, 3, episodes=20, seed=7)
    for value, episode in zip(values, sampler):
        grouped = torch.tensor(episode).view(4, 5)
        support, query = grouped[:, :2].reshape(-1), grouped[:, 2:].reshape(-1)
        reference = episode_accuracy(embeddings[support].double(), labels[support], embeddings[query].double(),
                                     labels[query])
        assert value.item() == pytest.approx(100 * reference)
    # seeded: the same episodes again, other ones with another seed
    assert torch.equal(values, episode_accuracies(embeddings, labels, n_way=4, k_shot=2, n_query=3, episodes=20, seed=7))
    assert not torch.equal(values, episode_accuracies(embeddings, labels, n_way=4, k_shot=2, n_query=3, episodes=20,
                                                      seed=8))


def test_separated_classes_score_100_and_identical_embeddings_score_chance_or_less():
    labels = torch.arange(6).repeat_interleave(10)
    separated = torch.nn.functional.one_hot(labels, 6).float() * 10 + 0.01 * torch.randn(60, 6)
    assert episode_accuracies(separated, labels, n_way=5, k_shot=1, n_query=4, episodes=30, seed=0).min() == 100.0
    # all embeddings equal: every distance ties and argmin picks the first prototype
    same = torch.zeros(60, 3)
    values = episode_accuracies(same, labels, n_way=5, k_shot=1, n_query=4, episodes=30, seed=0)
    assert torch.allclose(values, torch.full((30,), 20.0, dtype=values.dtype))


def test_infeasible_episodes_fail_before_training_and_say_why():
    preset = table5.PRESETS["ci"]
    small = _Toy()  # 2 classes of 3 images
    with pytest.raises(ValueError, match=r"20 classes.*has 2 classes"):
        _check_feasible(preset, small, small)


# ------------------------------------------------------------------ schedules and presets


def test_sgd_schedule_converts_epochs_to_steps():
    config = sgd_schedule(epochs=200, milestones=(60, 120, 160), steps_per_epoch=390)
    assert config == TrainConfig(steps=78_000, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                                 milestones=(23_400, 46_800, 62_400), gamma=0.2)
    compressed = compressed_schedule(300, epochs=200, milestones=(60, 120, 160))
    assert compressed.steps == 300 and compressed.milestones == (90, 180, 240) and compressed.gamma == 0.2


def test_table4_paper_preset_is_the_papers_protocol():
    cifar, tiny = table4.PRESETS["paper"].setups
    assert (cifar.data.name, cifar.teacher.name, cifar.student.name) == ("cifar100", "resnet50_cls", "vgg11_bn_cls")
    assert (tiny.data.name, tiny.teacher.name, tiny.student.name) == ("tiny_imagenet", "resnet101_cls", "resnet18_cls")
    assert cifar.train == sgd_schedule(epochs=200, milestones=(60, 120, 160), steps_per_epoch=50_000 // 128)
    assert tiny.train == sgd_schedule(epochs=300, milestones=(60, 120, 160, 200, 250), steps_per_epoch=100_000 // 128)
    assert cifar.batch_size == tiny.batch_size == 128
    assert cifar.teacher_schedule == cifar.train  # the paper trains the teacher the same way
    assert (cifar.data.train_transform, tiny.data.train_transform) == ("cifar", "tiny_imagenet")
    assert table4.METHODS[:len(table4.PAPER_METHODS)] == table4.PAPER_METHODS
    assert set(table4.METHODS) - set(table4.PAPER_METHODS) == {"RRD", "RRD+HKD"}


def test_fewshot_paper_presets_follow_snell_et_al():
    omniglot, mini = table5.PRESETS["paper"], table6.PRESETS["paper"]
    assert omniglot.train_way == {1: 60, 5: 60} and omniglot.train_query == 5
    assert omniglot.test_ways == (5, 20) and omniglot.test_episodes == 1000 and omniglot.test_query == 15
    assert mini.train_way == {1: 30, 5: 20} and mini.train_query == 15
    assert mini.test_ways == (5,) and mini.test_episodes == 600
    for preset in (omniglot, mini):
        assert preset.train.optimizer == "adam" and preset.train.lr == 1e-3 and preset.train.gamma == 0.5
        assert preset.train.milestones == tuple(range(2000, preset.train.steps, 2000))  # halved every 2,000
        assert dict(preset.model.options)["hidden_channels"] == 64 and preset.model.name == "conv4"
    assert dict(mini.model.options)["input_size"] == 84 and dict(omniglot.model.options)["input_size"] == 28


def test_fewshot_methods_carry_the_papers_weights_and_the_ci_attention_blocks():
    paper, ci = table6.PRESETS["paper"], table6.PRESETS["ci"]
    assert dict(fewshot_method(paper, "RKD-D").stages[0].terms) == {"prototypical": 1.0, "rkd_distance": 50.0}
    assert dict(fewshot_method(paper, "RKD-DA").stages[0].terms) == {"prototypical": 1.0, "rkd_distance": 25.0,
                                                                      "rkd_angle": 50.0}
    assert fewshot_method(paper, "Attention").options_for("attention") == {"blocks": ("block4",)}
    assert fewshot_method(ci, "Attention").options_for("attention") == {"blocks": ("block2", "block3")}
    assert dict(fewshot_method(ci, "Attention").stages[0].terms)["attention"] == 10.0


def test_run_refuses_unknown_scales_and_methods():
    for module in (table4, table5, table6):
        with pytest.raises(ValueError, match="valid scales: ci, paper"):
            module.run(scale="gpu")
        with pytest.raises(ValueError, match="valid: .*RKD-DA"):
            module.run(methods=["RKD-Z"])
    with pytest.raises(ValueError, match="valid: .*cifar100"):
        table4.run(scale="paper", datasets=["cifar10"])


def test_notebook_parameters_accept_the_notebooks_parameters():
    for module in (table4, table5, table6):
        params = notebook_parameters({"scale": "ci", "data_root": None, "device": "cpu", "seed": 0,
                                      "methods": ["RKD-D"], "progress": False, "dry_run": False}, module.run)
        assert params["methods"] == ("RKD-D",)


# ------------------------------------------------------------------ side by side and claims


def _table4_results(top1: dict[str, float], dataset: str = "toy") -> pd.DataFrame:
    return pd.DataFrame([{"dataset": dataset, "model": "m", "method": m, "top1": v, "scale": "ci", "seed": 0}
                         for m, v in top1.items()])


def test_table4_claims_on_the_paper_numbers():
    paper = table4.claims(_table4_results({"Baseline": 1.0}))["paper"]
    assert paper.loc["adding RKD-DA improves HKD, FitNet and attention", "CIFAR-100"] == "3/3"
    # Tiny ImageNet: FitNet+RKD-DA (55.54) is below FitNet (55.59)
    assert paper.loc["adding RKD-DA improves HKD, FitNet and attention", "Tiny ImageNet"] == "2/3"
    assert (paper.loc["HKD+RKD-DA beats every other configuration of the paper"] == "1/1").all()
    assert (paper.loc["RKD-D and RKD-DA each beat the baseline"] == "2/2").all()


def test_table4_claims_are_computed_from_our_numbers():
    top1 = {m: 50.0 + i for i, m in enumerate(table4.PAPER_METHODS)}  # later rows better: Attention+RKD-DA best
    top1.update({"Teacher": 90.0, "RRD": 99.0})
    ours = table4.claims(_table4_results(top1))["ours", "toy"]
    assert ours["RKD-D and RKD-DA each beat the baseline"] == "2/2"
    assert ours["adding RKD-DA improves HKD, FitNet and attention"] == "3/3"
    assert ours["HKD+RKD-DA beats every other configuration of the paper"] == "0/1"  # RRD does not count
    top1["RKD-D"] = 10.0
    assert table4.claims(_table4_results(top1))["ours", "toy"]["RKD-D and RKD-DA each beat the baseline"] == "1/2"
    partial = table4.claims(_table4_results({"Baseline": 1.0, "RKD-D": 2.0}))["ours", "toy"]
    assert partial["adding RKD-DA improves HKD, FitNet and attention"] == "n/a"
    assert "does not hold on toy (0/1)" in summarize_claims(table4.claims(_table4_results(top1)))


def test_table4_side_by_side_rows():
    top1 = {m: 50.0 for m in (*table4.METHODS, "Teacher")}
    table = table4.side_by_side(_table4_results(top1))
    assert list(table.index) == [*table4.METHODS, "Teacher"]
    assert table.loc["HKD+RKD-DA", ("paper (top-1 %)", "CIFAR-100")] == 74.66
    assert pd.isna(table.loc["RRD", ("paper (top-1 %)", "Tiny ImageNet")])
    assert table.loc["RRD", ("ours, scale=ci (top-1 %)", "toy")] == 50.0


def _fewshot_results(rows: list[tuple]) -> pd.DataFrame:
    """Rows (method, way, shot, accuracy, ci95[, paired gain CI95]); the gain is computed
    against the teacher row of the same (way, shot)."""
    teacher = {(w, s): a for m, w, s, a, *_ in rows if m == "Teacher"}
    return pd.DataFrame([{"dataset": "toy", "method": m, "way": w, "shot": s, "accuracy": a, "ci95": c,
                          "episodes": 200,
                          "gain": float("nan") if m == "Teacher" else a - teacher[(w, s)],
                          "gain_ci95": rest[0] if rest else float("nan"),
                          "scale": "ci", "seed": 0} for m, w, s, a, c, *rest in rows])


def test_fewshot_claims_on_the_paper_numbers():
    dummy = _fewshot_results([("Teacher", 5, 1, 50.0, 1.0)])
    omniglot = table5.claims(dummy)["paper", "Omniglot"]
    assert omniglot["RKD-D beats its teacher"] == "4/4"
    assert omniglot["RKD-DA beats its teacher"] == "3/4"  # 20-way 5-shot: 98.67 < 98.68
    assert omniglot["RKD-DA beats its teacher by more than both 95% CI half-widths"] == "n/a"  # no CI printed
    mini = table6.claims(dummy)["paper", "miniImageNet"]
    assert mini["RKD-DA beats its teacher"] == "2/2" and mini["Attention beats its teacher"] == "0/2"
    assert mini["RKD-DA beats its teacher by more than both 95% CI half-widths"] == "2/2"
    assert mini["RKD-D beats its teacher by more than both 95% CI half-widths"] == "0/2"


def test_fewshot_claims_are_computed_from_our_numbers():
    ours = _fewshot_results([
        ("Teacher", 5, 1, 60.0, 1.0), ("Teacher", 5, 5, 70.0, 1.0),
        ("RKD-D", 5, 1, 60.5, 1.0, 0.4), ("RKD-D", 5, 5, 69.0, 1.0, 0.4),
        ("RKD-DA", 5, 1, 62.0, 1.0, 2.5), ("RKD-DA", 5, 5, 72.5, 1.0, 0.5),
    ])
    claims = table6.claims(ours)["ours", "toy"]
    assert claims["RKD-D beats its teacher"] == "1/2"
    assert claims["RKD-D beats its teacher by more than both 95% CI half-widths"] == "0/2"
    # paired: +0.5 +- 0.4 is above zero although it is inside both unpaired intervals
    assert claims["RKD-D beats its teacher on the same episodes (paired 95% CI above 0)"] == "1/2"
    assert claims["RKD-DA beats its teacher by more than both 95% CI half-widths"] == "2/2"
    assert claims["RKD-DA beats its teacher on the same episodes (paired 95% CI above 0)"] == "1/2"  # +2 +- 2.5
    assert claims["FitNet beats its teacher"] == "n/a"  # not run
    paper = table6.claims(ours)["paper", "miniImageNet"]
    assert paper["RKD-DA beats its teacher on the same episodes (paired 95% CI above 0)"] == "n/a"
    table = table6.side_by_side(ours)
    assert table.loc["RKD-DA", ("ours, scale=ci", "5-way 5-shot")] == "72.50 ± 1.00"
    assert table.loc["RKD-DA", ("paper", "5-way 5-shot")] == "68.16 ± 0.67"
    assert table.loc["FitNet", ("ours, scale=ci", "5-way 1-shot")] == "—"


def test_paper_results_in_long_form():
    omniglot = table5.paper_results()
    assert len(omniglot) == 12 and set(omniglot["way"]) == {5, 20} and set(omniglot["shot"]) == {1, 5}
    row = omniglot[(omniglot.method == "RKD-DA") & (omniglot.way == 20) & (omniglot.shot == 5)]
    assert row["accuracy"].item() == 98.67
    mini = table6.paper_results()
    row = mini[(mini.method == "Teacher") & (mini.shot == 5)]
    assert (row["accuracy"].item(), row["ci95"].item()) == (66.87, 0.66)


# ------------------------------------------------------------------ short ci-scale runs


def test_table4_ci_pipeline_on_digits_is_deterministic(monkeypatch):
    preset = table4.PRESETS["ci"]
    digits = next(s for s in preset.setups if s.data.name == "digits")
    short = replace(digits, train=replace(digits.train, steps=4, milestones=(2,)),
                    teacher_train=replace(digits.train, steps=4, milestones=(2,)))
    monkeypatch.setitem(table4.PRESETS, "ci", replace(preset, setups=(short,)))
    first = table4.run("ci", methods=["Baseline", "RKD-DA", "FitNet"], progress=False)
    assert list(first["method"]) == ["Teacher", "Baseline", "RKD-DA", "FitNet"]
    assert first["top1"].between(0, 100).all() and set(first["dataset"]) == {"digits (scikit-learn)"}
    second = table4.run("ci", methods=["Baseline", "RKD-DA", "FitNet"], progress=False)
    pd.testing.assert_frame_equal(first, second)


@needs_fashion
def test_table6_ci_pipeline_runs_every_method(monkeypatch):
    preset = table6.PRESETS["ci"]
    short = replace(preset, train=replace(preset.train, steps=2, milestones=()), test_episodes=10,
                    data=replace(preset.data, max_test_per_class=20))
    monkeypatch.setitem(table6.PRESETS, "ci", short)
    results = table6.run("ci", progress=False)
    assert len(results) == 2 * (1 + len(table6.METHODS))
    assert results["accuracy"].between(0, 100).all() and (results["ci95"] > 0).all()
    assert set(results["episodes"]) == {10}
    # the paired gain is the difference of the means over the same episodes
    for shot, rows in results.groupby("shot"):
        teacher = rows[rows.method == "Teacher"]
        assert teacher["gain"].isna().all()
        students = rows[rows.method != "Teacher"]
        expected = students["accuracy"] - teacher["accuracy"].item()
        assert (students["gain"] - expected).abs().max() < 1e-9
        assert (students["gain_ci95"] >= 0).all()


@needs_fashion
def test_table5_ci_has_twenty_test_classes_for_twenty_way_episodes():
    from rkd.experiments.fewshot import load_fewshot_split

    preset = table5.PRESETS["ci"]
    test_set = load_fewshot_split(preset, None, "test")
    assert test_set.num_classes == 20 and len(test_set) == 20 * preset.data.max_test_per_class
    train_set = load_fewshot_split(preset, None, "train")
    assert train_set.num_classes == 20
    _check_feasible(preset, train_set, test_set)  # every way and shot of the preset can be drawn
