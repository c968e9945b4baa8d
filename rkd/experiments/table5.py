"""Table 5: few-shot accuracy on Omniglot of prototypical networks self-distilled with
RKD-D and RKD-DA, against their teacher (5-way and 20-way, 1-shot and 5-shot).

``run(scale=...)`` returns one row per (model, way, shot). At ``scale="paper"`` it is the
paper's protocol (Snell et al.'s training procedure, Vinyals split, 4-conv embedding,
1,000 test episodes). At ``scale="ci"`` the same protocol runs on an offline stand-in:
Fashion-MNIST with its classes split in two disjoint halves and, as Vinyals et al. do
with Omniglot's characters, each class in four rotations counted as four classes, so
that 20-way episodes exist (5 test classes x 4 rotations = 20 test classes).
"""
from __future__ import annotations

import pandas as pd

from ..train import TrainConfig
from .fewshot import TEACHER_ROW, FewShotPreset, plot_gains, run_fewshot, student_vs_teacher
from .metric_learning import DataSpec, ModelSpec

__all__ = ["PRESETS", "METHODS", "run", "paper_results", "side_by_side", "claims", "plot"]

TAPS = ("block2", "block3", "block4")
METHODS = ("RKD-D", "RKD-DA")

# Snell et al.: Adam 1e-3, halved every 2,000 episodes. They stop on the validation
# loss; we train a fixed 20,000 episodes (the lr is then 1/512 of its start).
PAPER_EPISODES = 20_000
CI_EPISODES = 100

PRESETS: dict[str, FewShotPreset] = {
    "ci": FewShotPreset(
        scale="ci",
        data=DataSpec("fashion_mnist", "Fashion-MNIST", options=(("protocol", "fewshot"),), max_test_per_class=60),
        rotation_classes=(0, 90, 180, 270),
        model=ModelSpec("conv4", (("in_channels", 1), ("input_size", 28), ("hidden_channels", 32), ("taps", TAPS))),
        train=TrainConfig(steps=CI_EPISODES, optimizer="adam", lr=1e-3, milestones=(CI_EPISODES // 2,), gamma=0.5),
        # all 20 training classes in every episode (Snell et al. use 60 of Omniglot's 4,800)
        train_way={1: 20, 5: 20},
        train_query=5,
        test_ways=(5, 20),
        test_query=15,
        test_episodes=200,
        episodes_per_epoch=100,
        threads=1,  # one thread: deterministic, and immune to OpenMP slowdowns on a loaded machine
        notes=(
            "offline stand-in on the CPU: Fashion-MNIST, classes 0-4 for training and 5-9 for testing, each in "
            f"four rotations (20 + 20 classes); `conv4` with 32 channels per block instead of 64; {CI_EPISODES} "
            "training episodes per model instead of Snell et al.'s early-stopped thousands; 200 test episodes"
        ),
    ),
    "paper": FewShotPreset(
        scale="paper",
        data=DataSpec("omniglot", "Omniglot", train_transform="omniglot", test_transform="omniglot", subdir="omniglot"),
        model=ModelSpec("conv4", (("in_channels", 1), ("input_size", 28), ("hidden_channels", 64), ("taps", TAPS))),
        train=TrainConfig(steps=PAPER_EPISODES, optimizer="adam", lr=1e-3,
                          milestones=tuple(range(2000, PAPER_EPISODES, 2000)), gamma=0.5),
        train_way={1: 60, 5: 60},
        train_query=5,
        test_ways=(5, 20),
        test_query=15,
        test_episodes=1000,
        episodes_per_epoch=100,
        cache_images=True,
        notes=(
            "the paper's protocol: Omniglot with the Vinyals split (1,200 training characters, 423 test "
            "characters, each in 4 rotations), 28x28, `conv4` with 64 channels, Snell et al.'s training "
            f"episodes (60-way, 5 queries), a fixed {PAPER_EPISODES:,} episodes per model (Snell et al. stop on "
            "the validation loss), 1,000 test episodes"
        ),
    ),
}


def run(
    scale: str = "ci",
    data_root: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    methods: tuple[str, ...] | None = None,
    progress: bool = True,
    dry_run: bool = False,
) -> pd.DataFrame:
    """Run Table 5 at ``scale`` and return one row per (model, way, shot).

    Columns: dataset, method ("Teacher" for the teacher), way, shot, accuracy (%), ci95
    (half-width, points), episodes, scale, seed. ``dry_run=True`` prints what the full
    run would do, then trains every model for two episodes on the CPU with the preset's
    data, model and losses; its rows say ``scale="<scale> (dry run)"``.
    """
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(sorted(PRESETS))}")
    chosen = tuple(methods) if methods is not None else METHODS
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown Table 5 method(s) {unknown}; valid: {', '.join(METHODS)}")
    return run_fewshot(PRESETS[scale], chosen, data_root=data_root, device=device, seed=seed, progress=progress,
                       dry_run=dry_run, title="Table 5")


def paper_results() -> pd.DataFrame:
    """The paper's Table 5 in long form: method, way, shot, accuracy (no CI printed)."""
    from ..paper import paper_table

    wide = paper_table("table5")
    long = wide.melt(id_vars="method", var_name="setting", value_name="accuracy")
    setting = long["setting"].str.extract(r"(?P<way>\d+)-way (?P<shot>\d+)-shot").astype(int)
    return pd.concat([long[["method"]], setting, long[["accuracy"]]], axis=1)


_ROW_ORDER = (*METHODS, TEACHER_ROW)


def _column(way: int, shot: int) -> str:
    return f"{way}-way {shot}-shot"


def side_by_side(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's accuracy beside ours (mean ± CI95 over our test episodes), one row
    per method, one column per (way, shot)."""
    paper = paper_results()
    paper["setting"] = [_column(w, s) for w, s in zip(paper["way"], paper["shot"])]
    left = paper.pivot_table(index="method", columns="setting", values="accuracy", sort=False)
    left = left.map(lambda v: f"{v:.2f}")
    left.columns = pd.MultiIndex.from_tuples([("paper", c) for c in left.columns])
    ours = results.assign(setting=[_column(w, s) for w, s in zip(results["way"], results["shot"])],
                          shown=[f"{a:.2f} ± {c:.2f}" for a, c in zip(results["accuracy"], results["ci95"])])
    right = ours.pivot_table(index="method", columns="setting", values="shown", aggfunc="first", sort=False)
    # the paper's column order: 5-way before 20-way, 1-shot before 5-shot within each
    settings = sorted(zip(results["way"], results["shot"]))
    right = right[list(dict.fromkeys(_column(w, s) for w, s in settings))]
    scale = results["scale"].iloc[0] if len(results) else "?"
    right.columns = pd.MultiIndex.from_tuples([(f"ours, scale={scale}", c) for c in right.columns])
    table = left.join(right, how="outer")
    order = {m: i for i, m in enumerate(_ROW_ORDER)}
    return table.loc[sorted(table.index, key=lambda m: order.get(m, len(order)))].fillna("—")


def claims(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's claim for Table 5 ("our method consistently improves the student over
    the teacher"), checked per method on its numbers and on ours: "3/4" means the
    student beats its teacher in three of the four (way, shot) settings. Two stricter
    rows per method ask for a gain beyond the 95% half-widths of both models, and for a
    paired 95% interval of the per-episode gain above zero (see
    :func:`~rkd.experiments.fewshot.student_vs_teacher`)."""
    return student_vs_teacher(paper_results(), results, METHODS, paper_dataset="Omniglot")


def plot(results: pd.DataFrame):
    """Student minus teacher accuracy (points) per setting: the paper's and ours, ours
    with the paired 95% half-width of the per-episode gain as error bars."""
    return plot_gains(paper_results(), results, METHODS, title="Table 5")
