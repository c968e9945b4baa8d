"""Table 1: Recall@1 of small ResNet18 students distilled from a ResNet50 triplet teacher,
for several embedding sizes, with and without L2 normalisation of the student.

``run(scale=...)`` returns one row per measured number. At ``scale="ci"`` the same
protocol runs on offline stand-ins (Fashion-MNIST and scikit-learn digits, first half of
the classes for training and the second half for testing, small CNNs trained from
scratch); at ``scale="paper"`` it is the paper's protocol on CUB-200-2011 and Cars196.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..runtime import configure_determinism, seed_everything
from ..train import TrainConfig
from .metric_learning import (
    DataSpec,
    MetricPreset,
    ModelSpec,
    dry_run_preset,
    load_split,
    plan,
    resolve_device,
    train_embedding_model,
    train_triplet_teacher,
)

__all__ = ["PRESETS", "METHODS", "run"]

TAPS = ("block2", "block3", "block4")

# method -> the student L2-normalisation settings the paper reports for it
METHODS: dict[str, tuple[bool, ...]] = {
    "Triplet": (True,),
    "FitNet": (True,),
    "Attention": (True,),
    "DarkRank": (True,),
    "RKD-D": (True, False),
    "RKD-A": (True, False),
    "RKD-DA": (True, False),
    "RRD": (True, False),
}

_FASHION = DataSpec(
    "fashion_mnist",
    "Fashion-MNIST",
    options=(("protocol", "retrieval"),),
    max_test_per_class=400,
)
_DIGITS = DataSpec(
    "digits",
    "digits (scikit-learn, 8x8 upscaled to 28x28)",
    options=(("protocol", "retrieval"),),
    train_transform="upscale_28",
    test_transform="upscale_28",
)

PRESETS: dict[str, MetricPreset] = {
    "ci": MetricPreset(
        scale="ci",
        datasets=(_FASHION, _DIGITS),
        teacher=ModelSpec("small_cnn_wide", (("in_channels", 1), ("taps", TAPS))),
        teacher_dim=512,
        student=ModelSpec("small_cnn", (("in_channels", 1), ("taps", TAPS))),
        # two of the paper's four sizes, the smallest and a large one, to stay within minutes
        embedding_dims=(16, 64),
        # trained from scratch, so a larger learning rate than the paper's fine-tuning
        teacher_train=TrainConfig(steps=600, optimizer="adam", lr=1e-3, weight_decay=1e-5, milestones=(400,), gamma=0.1),
        student_train=TrainConfig(steps=200, optimizer="adam", lr=1e-3, weight_decay=1e-5, milestones=(150,), gamma=0.1),
        batch_size=60,
        m_per_class=12,  # only 5 training classes: 5 classes x 12 images
        eval_batch_size=500,
        threads=1,  # one thread: deterministic, and immune to OpenMP slowdowns on a loaded machine
        notes="offline stand-ins: class-disjoint halves of Fashion-MNIST and digits; small CNNs from scratch; CPU",
    ),
    "paper": MetricPreset(
        scale="paper",
        datasets=(
            DataSpec("cub200", "CUB-200-2011", train_transform="metric", test_transform="metric"),
            DataSpec("cars196", "Cars196", train_transform="metric", test_transform="metric", subdir="cars196"),
        ),
        teacher=ModelSpec("resnet50", (("pretrained", True), ("taps", TAPS))),
        teacher_dim=512,
        student=ModelSpec("resnet18", (("pretrained", True), ("taps", TAPS))),
        embedding_dims=(16, 32, 64, 128),
        # (code) teacher: 40 epochs x 100 iterations, Adam 1e-5, lr x0.5 at 25, 30, 35
        teacher_train=TrainConfig(
            steps=40 * 100, optimizer="adam", lr=1e-5, weight_decay=1e-5, milestones=(2500, 3000, 3500), gamma=0.5
        ),
        # (code) students: 80 epochs x 100 iterations, Adam 1e-4, lr x0.1 at 40 and 60
        student_train=TrainConfig(
            steps=80 * 100, optimizer="adam", lr=1e-4, weight_decay=1e-5, milestones=(4000, 6000), gamma=0.1
        ),
        # the paper's batch of 128 with 5 images per class; 125 = 25 classes x 5 images
        batch_size=125,
        m_per_class=5,
        batches_per_epoch=100,
        eval_batch_size=128,
        threads=None,
        notes="the paper's protocol: ImageNet-pretrained ResNet50 teacher, ResNet18 students, 224x224 crops",
    ),
}


def run(
    scale: str = "ci",
    data_root: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    embedding_dims: tuple[int, ...] | None = None,
    methods: tuple[str, ...] | None = None,
    datasets: tuple[str, ...] | None = None,
    progress: bool = True,
    dry_run: bool = False,
) -> pd.DataFrame:
    """Run Table 1 at ``scale`` and return one row per (dataset, model) measured.

    Columns: dataset, model, embedding_dim, method, l2_normalize ("yes"/"no"),
    recall_at_{1,2,4,8}, scale, seed. The first row of each dataset is the teacher.

    ``dry_run=True`` prints what the full run would do, then runs every method for two
    steps on the CPU with the preset's data and models (see
    :func:`~rkd.experiments.metric_learning.dry_run_preset`); its rows say
    ``scale="<scale> (dry run)"`` and are smoke-test numbers, not results.
    """
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[scale]
    if embedding_dims is not None:
        preset = replace(preset, embedding_dims=tuple(int(d) for d in embedding_dims))
    chosen_methods = tuple(methods) if methods is not None else tuple(METHODS)
    unknown = [m for m in chosen_methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown Table 1 method(s) {unknown}; valid: {', '.join(METHODS)}")
    specs = preset.datasets
    if datasets is not None:
        by_name = {d.name: d for d in preset.datasets}
        missing = [d for d in datasets if d not in by_name]
        if missing:
            raise ValueError(f"dataset(s) {missing} are not part of Table 1 at scale {scale!r}; valid: {sorted(by_name)}")
        specs = tuple(by_name[d] for d in datasets)

    dev = resolve_device(device)
    configure_determinism(preset.threads)
    runs = [(dim, m, l2) for dim in preset.embedding_dims for m in chosen_methods for l2 in METHODS[m]]
    if dry_run:
        print(plan(preset, len(runs), title="Table 1"))
        preset = dry_run_preset(preset)
        runs = [(dim, m, l2) for dim in preset.embedding_dims for m in chosen_methods for l2 in METHODS[m]]
        dev = torch.device("cpu")
    label = f"{scale} (dry run)" if dry_run else scale
    rows = []
    overall = tqdm(total=len(specs) * (1 + len(runs)), desc=f"Table 1 ({scale})", disable=not progress)
    for spec in specs:
        train_set = load_split(spec, data_root, "train", train=True)
        test_set = load_split(spec, data_root, "test", train=False)

        def record(model_name, dim, method, l2, metrics):
            rows.append(
                {
                    "dataset": spec.display,
                    "model": model_name,
                    "embedding_dim": dim,
                    "method": method,
                    "l2_normalize": "yes" if l2 else "no",
                    **metrics,
                    "scale": label,
                    "seed": seed,
                }
            )

        teacher, metrics = train_triplet_teacher(
            preset,
            train_set=train_set,
            test_set=test_set,
            device=dev,
            seed=seed,
            progress=progress,
            desc=f"{spec.display} teacher",
        )
        record(preset.teacher.name, preset.teacher_dim, "Triplet (teacher)", True, metrics)
        overall.update(1)

        for dim, method, l2 in runs:
            seed_everything(seed)
            student = preset.student.build(embedding_dim=dim, normalize=l2)
            metrics = train_embedding_model(
                preset,
                student=student,
                teacher=teacher,
                method=method,
                train_config=preset.student_train,
                train_set=train_set,
                test_set=test_set,
                device=dev,
                seed=seed,
                desc=f"{spec.display} {method} d={dim} l2={'yes' if l2 else 'no'}",
                progress=progress,
            )
            record(preset.student.name, dim, method, l2, metrics)
            overall.update(1)
    overall.close()
    return pd.DataFrame(rows)


_PAPER_DATASETS = ("CUB-200-2011", "Cars196")
_RKD = ("RKD-D", "RKD-A", "RKD-DA")


def side_by_side(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's Recall@1 (CUB-200-2011, Cars196) beside ours, one row per
    (embedding size, method, L2 normalisation). Missing entries are NaN: the paper has
    no RRD row, and a run restricted to fewer methods has fewer rows of its own."""
    from ..paper import paper_table

    keys = ["embedding_dim", "method", "l2_normalize"]
    scale = results["scale"].iloc[0] if len(results) else "?"
    paper = paper_table("table1").pivot_table(index=keys, columns="dataset", values="recall_at_1")
    ours = results.pivot_table(index=keys, columns="dataset", values="recall_at_1", sort=False)
    columns = [("paper (Recall@1)", c) for c in paper.columns] + [(f"ours, scale={scale} (Recall@1)", c) for c in ours.columns]
    table = paper.join(ours, how="outer")
    table.columns = pd.MultiIndex.from_tuples(columns)
    # teacher first, then by size, method in the paper's order, L2 before no L2
    order = {m: i for i, m in enumerate(["Triplet (teacher)", *METHODS])}
    index = table.index.to_frame(index=False)
    sort_key = pd.DataFrame(
        {
            "student": index["method"] != "Triplet (teacher)",
            "dim": index["embedding_dim"],
            "method": index["method"].map(order).fillna(len(order)),
            "no_l2": index["l2_normalize"] == "no",
        }
    )
    return table.iloc[sort_key.sort_values(list(sort_key.columns), kind="stable").index]


def claims(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 claims, checked on ``results`` (ours) and on the paper's numbers.

    Each row says how often the claim holds, e.g. "4/4" embedding sizes, so a claim that
    fails at some scale shows up as such instead of being summarised away.
    """
    from ..paper import paper_table

    paper = paper_table("table1")
    rows = []
    for source, frame in (("paper", paper), ("ours", results)):
        for dataset, df in frame.groupby("dataset", sort=False):
            for claim, (held, total) in _check_claims(df).items():
                rows.append({"claim": claim, "source": source, "dataset": dataset, "holds": f"{held}/{total}" if total else "n/a"})
    out = pd.DataFrame(rows)
    return out.pivot_table(index="claim", columns=["source", "dataset"], values="holds", aggfunc="first", sort=False)


def _check_claims(df: pd.DataFrame) -> dict[str, tuple[int, int]]:
    def r1(method, dim, l2):
        hit = df[(df["method"] == method) & (df["embedding_dim"] == dim) & (df["l2_normalize"] == l2)]["recall_at_1"]
        return float(hit.iloc[0]) if len(hit) else None

    dims = sorted(d for d in df.loc[df["method"] != "Triplet (teacher)", "embedding_dim"].unique())
    teacher = df.loc[df["method"] == "Triplet (teacher)", "recall_at_1"]
    teacher = float(teacher.iloc[0]) if len(teacher) else None
    checks: dict[str, list[bool]] = {
        "every RKD student (D, A, DA; L2 or not) beats the Triplet student of its size": [],
        "an RKD student without L2 beats the same one with L2": [],
        "RKD-DA beats FitNet, Attention and DarkRank at the same size (L2 on)": [],
        "an RKD student beats the teacher": [],
    }
    for dim in dims:
        triplet = r1("Triplet", dim, "yes")
        rkd = [r1(m, dim, l2) for m in _RKD for l2 in ("yes", "no")]
        rkd = [v for v in rkd if v is not None]
        if triplet is not None and rkd:
            checks["every RKD student (D, A, DA; L2 or not) beats the Triplet student of its size"].append(min(rkd) > triplet)
        for m in _RKD:
            yes, no = r1(m, dim, "yes"), r1(m, dim, "no")
            if yes is not None and no is not None:
                checks["an RKD student without L2 beats the same one with L2"].append(no > yes)
        da = r1("RKD-DA", dim, "yes")
        others = [r1(m, dim, "yes") for m in ("FitNet", "Attention", "DarkRank")]
        if da is not None and all(v is not None for v in others):
            checks["RKD-DA beats FitNet, Attention and DarkRank at the same size (L2 on)"].append(da > max(others))
        if teacher is not None and rkd:
            checks["an RKD student beats the teacher"].append(max(rkd) > teacher)
    return {claim: (sum(v), len(v)) for claim, v in checks.items()}


def plot(results: pd.DataFrame):
    """Recall@1 against embedding size, one panel per dataset: the paper's two, then ours."""
    import matplotlib.pyplot as plt

    from ..paper import paper_table

    panels = [("paper", d, df) for d, df in paper_table("table1").groupby("dataset", sort=False)]
    panels += [(f"ours ({results['scale'].iloc[0]})", d, df) for d, df in results.groupby("dataset", sort=False)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=False, squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for ax, (source, dataset, df) in zip(axes[0], panels):
        students = df[df["method"] != "Triplet (teacher)"]
        for (method, l2), line in students.groupby(["method", "l2_normalize"], sort=False):
            line = line.sort_values("embedding_dim")
            ax.plot(
                line["embedding_dim"], line["recall_at_1"], marker="o", ms=3,
                color=colours.get(method, "k"), linestyle="-" if l2 == "yes" else "--",
                label=f"{method}" + ("" if l2 == "yes" else " (no L2)"),
            )
        teacher = df.loc[df["method"] == "Triplet (teacher)", "recall_at_1"]
        if len(teacher):
            ax.axhline(float(teacher.iloc[0]), color="k", linewidth=1, linestyle=":", label="teacher")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(students["embedding_dim"].unique()))
        ax.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
        ax.set_title(f"{dataset}\n{source}", fontsize=10)
        ax.set_xlabel("student embedding size")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Recall@1 (%)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig
