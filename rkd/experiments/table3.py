"""Table 3: RKD-DA students with the backbones and embedding sizes of the metric-learning
state of the art (GoogLeNet-128, GoogLeNet-512, ResNet50-128), Recall@K on CUB-200-2011,
Cars196 (K = 1, 2, 4, 8) and Stanford Online Products (K = 1, 10, 100, 1000).

The paper's other rows (LiftedStruct, N-pairs, Angular, A-BIER, ABE8, Margin) are
published numbers of other methods, shown as the paper reports them; only the RKD-DA
rows are trained here. ``run(scale=...)`` returns one row per trained model: the
ResNet50-512 triplet teacher of each dataset, then its students. At ``scale="ci"``
``small_cnn`` stands in for GoogLeNet and ``small_cnn_wide`` for ResNet50, on the
offline stand-ins (Fashion-MNIST and scikit-learn digits, class-disjoint halves).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..runtime import configure_determinism, seed_everything
from . import table1
from .metric_learning import (
    CARS196_RETRIEVAL,
    CUB200_RETRIEVAL,
    SOP_RETRIEVAL,
    STUDENT_TRAIN_BY_DATASET,
    MetricPreset,
    ModelSpec,
    describe as describe_preset,
    dry_run_preset_all_datasets,
    feasible_ks,
    load_split,
    preset_for_dataset,
    resolve_device,
    student_train_for,
    tidy,
    train_embedding_model,
    train_triplet_teacher,
    without_pretrained,
)

__all__ = ["Student", "PRESETS", "STUDENTS", "run", "describe", "side_by_side", "paper_rows", "claims", "plot"]

METHOD = "RKD-DA"
TEACHER_METHOD = "Triplet (teacher)"
# the paper's teacher network, which the ci teacher plays
TEACHER_BACKBONE = "ResNet50"


@dataclass(frozen=True)
class Student:
    """One RKD-DA row of Table 3: the paper's backbone name, the network that plays it at
    this scale, and the embedding size."""

    backbone: str
    model: ModelSpec
    embedding_dim: int


# The paper does not say whether its Table 3 students are L2-normalised; section 4.1.2
# reports that RKD students do better without, and drops it for self-distillation. We
# follow that: no L2 normalisation.
L2_NORMALIZE = False

_TABLE1 = table1.PRESETS
# torchvision's GoogLeNet weights expect ImageNet-normalised inputs (the network rescales
# them itself, transform_input=True), so GoogLeNet reads the same `metric` images as the
# ResNet50 teacher. The authors fed a Caffe-converted GoogLeNet BGR 0-255 inputs (the
# `metric_caffe` transform); that is only right with such weights, which we do not load.
_GOOGLENET = ModelSpec("googlenet", (("pretrained", True),))

# ci: Table 1's small_cnn student plays GoogLeNet and its small_cnn_wide teacher network
# plays ResNet50 (the wider and deeper of the two, as ResNet50 is to GoogLeNet)
STUDENTS: dict[str, tuple[Student, ...]] = {
    "ci": (
        Student("GoogLeNet", _TABLE1["ci"].student, 128),
        Student("GoogLeNet", _TABLE1["ci"].student, 512),
        Student("ResNet50", _TABLE1["ci"].teacher, 128),
    ),
    "paper": (
        Student("GoogLeNet", _GOOGLENET, 128),
        Student("GoogLeNet", _GOOGLENET, 512),
        Student("ResNet50", _TABLE1["paper"].teacher, 128),
    ),
}

# Table 1's presets: the teacher of each dataset is exactly Table 1's (same network,
# schedule, data and seed), and so are the students' schedules.
PRESETS: dict[str, MetricPreset] = {
    "ci": replace(
        _TABLE1["ci"],
        datasets=_TABLE1["ci"].datasets,  # Fashion-MNIST and digits, read as Table 1 reads them
        embedding_dims=(128, 512),
        notes="offline stand-ins: class-disjoint halves of Fashion-MNIST and digits; small_cnn stands in for "
        "GoogLeNet and small_cnn_wide for ResNet50, all trained from scratch (Table 1's ci schedules); CPU",
    ),
    "paper": replace(
        _TABLE1["paper"],
        datasets=(CUB200_RETRIEVAL, CARS196_RETRIEVAL, SOP_RETRIEVAL),
        student=_GOOGLENET,
        embedding_dims=(128, 512),
        notes="the paper's protocol: ImageNet-pretrained ResNet50-512 triplet teacher; ImageNet-pretrained "
        "GoogLeNet and ResNet50 students; 224x224 crops",
        extra={
            # (code) SOP students: 120 epochs of 100 iterations, lr x0.1 at 40 and 80
            STUDENT_TRAIN_BY_DATASET: {
                "sop": replace(_TABLE1["paper"].student_train, steps=120 * 100, milestones=(4000, 8000)),
            }
        },
    ),
}


def _label(spec: ModelSpec, dim: int) -> str:
    return f"{spec.name}-{dim}"


def plan(preset: MetricPreset, students: tuple[Student, ...]) -> str:
    """What a full run does, dataset by dataset, in optimiser steps."""
    names = ", ".join(f"`{_label(s.model, s.embedding_dim)}` (as {s.backbone}-{s.embedding_dim})" for s in students)
    lines = [f"Table 3 at scale={preset.scale!r}: RKD-DA students {names}, no L2 normalisation."]
    total = 0
    for spec in preset.datasets:
        student_steps = student_train_for(preset, spec).steps
        total += preset.teacher_train.steps + len(students) * student_steps
        lines.append(
            f"- {spec.display}: a `{_label(preset.teacher, preset.teacher_dim)}` triplet teacher for "
            f"{preset.teacher_train.steps} steps, then {len(students)} students of {student_steps} steps each; "
            f"Recall@{','.join(map(str, spec.ks or preset.ks))}."
        )
    lines.append(
        f"{total:,} optimiser steps in all, batches of {preset.batch_size // preset.m_per_class} classes x "
        f"{preset.m_per_class} images. Output: one row per (dataset, model)."
    )
    return "\n".join(lines)


def run(
    scale: str = "ci",
    data_root: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    datasets: tuple[str, ...] | None = None,
    progress: bool = True,
    dry_run: bool = False,
) -> pd.DataFrame:
    """Run Table 3 at ``scale``; one row per (dataset, trained model).

    Columns: dataset, backbone (the paper's backbone the model plays), model, method,
    embedding_dim, l2_normalize, recall_at_K for the dataset's Ks (other Ks NaN),
    scale, seed. The first row of each dataset is the teacher.

    ``dry_run=True`` prints the plan of the full run, then trains every model for two
    steps on the CPU with the preset's data and networks (no pretrained weights); its
    rows say ``scale="<scale> (dry run)"`` and are smoke-test numbers, not results.
    """
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(sorted(PRESETS))}")
    preset, students = PRESETS[scale], STUDENTS[scale]
    specs = preset.datasets
    if datasets is not None:
        by_name = {d.name: d for d in preset.datasets}
        missing = [d for d in datasets if d not in by_name]
        if missing:
            raise ValueError(f"dataset(s) {missing} are not part of Table 3 at scale {scale!r}; valid: {sorted(by_name)}")
        specs = tuple(by_name[d] for d in datasets)
    dev = resolve_device(device)
    configure_determinism(preset.threads)
    if dry_run:
        print(plan(replace(preset, datasets=specs), students))
        preset = dry_run_preset_all_datasets(preset)
        students = tuple(replace(s, model=without_pretrained(s.model)) for s in students)
        dev = torch.device("cpu")
    label = f"{scale} (dry run)" if dry_run else scale

    rows = []
    overall = tqdm(total=len(specs) * (1 + len(students)), desc=f"Table 3 ({scale})", disable=not progress)
    for spec in specs:
        train_set = load_split(spec, data_root, "train", train=True)
        test_set = load_split(spec, data_root, "test", train=False)
        data_preset = preset_for_dataset(preset, spec)
        if dry_run:
            data_preset = replace(data_preset, ks=feasible_ks(data_preset.ks, len(test_set)))

        def record(backbone: str, model: str, method: str, dim: int, l2: bool, metrics: dict[str, float]) -> None:
            rows.append(
                {
                    "dataset": spec.display,
                    "backbone": backbone,
                    "model": model,
                    "method": method,
                    "embedding_dim": dim,
                    "l2_normalize": "yes" if l2 else "no",
                    **metrics,
                    "scale": label,
                    "seed": seed,
                }
            )

        teacher, metrics = train_triplet_teacher(
            data_preset,
            train_set=train_set,
            test_set=test_set,
            device=dev,
            seed=seed,
            progress=progress,
            desc=f"{spec.display} teacher",
            small_classes=spec.small_classes,
        )
        record(TEACHER_BACKBONE, preset.teacher.name, TEACHER_METHOD, preset.teacher_dim, True, metrics)
        overall.update(1)

        for student_spec in students:
            seed_everything(seed)
            student = student_spec.model.build(embedding_dim=student_spec.embedding_dim, normalize=L2_NORMALIZE)
            metrics = train_embedding_model(
                data_preset,
                student=student,
                teacher=teacher,
                method=METHOD,
                train_config=student_train_for(data_preset, spec),
                train_set=train_set,
                test_set=test_set,
                device=dev,
                seed=seed,
                desc=f"{spec.display} {_label(student_spec.model, student_spec.embedding_dim)}",
                progress=progress,
                small_classes=spec.small_classes,
            )
            record(student_spec.backbone, student_spec.model.name, METHOD, student_spec.embedding_dim,
                   L2_NORMALIZE, metrics)
            overall.update(1)
    overall.close()
    return tidy(rows)


def describe(scale: str, device: torch.device | str) -> str:
    """Markdown: where the numbers of a Table 3 run at ``scale`` come from."""
    preset = PRESETS[scale]
    text = describe_preset(
        preset, device, what="Recall@K over the test classes, each image a query against all others"
    )
    students = ", ".join(
        f"`{_label(s.model, s.embedding_dim)}` playing {s.backbone}-{s.embedding_dim}" for s in STUDENTS[scale]
    )
    schedules = "; ".join(
        f"{spec.display}: {student_train_for(preset, spec).steps} steps"
        for spec in preset.datasets
        if student_train_for(preset, spec) is not preset.student_train
    )
    return text + (
        f"\n\n**Table 3 students:** {students}; RKD-DA (lambda_D 1, lambda_A 2, no task loss) from the "
        f"`{_label(preset.teacher, preset.teacher_dim)}` triplet teacher (Table 1's teacher of the same dataset: same "
        f"network, schedule, data and seed), without L2 normalisation (the paper "
        f"does not say; its section 4.1.2 finds RKD students better without)."
        + (f" Per-dataset student schedules: {schedules}." if schedules else "")
        + " The rows of other methods are the paper's published numbers, not run here."
    )


# ---------------------------------------------------------------- the paper beside ours


def _method_label(method: str, dim: int) -> str:
    return f"{method}-{int(dim)}"


def paper_rows() -> pd.DataFrame:
    """The paper's Table 3 as it prints it: one row per (backbone, method-size), columns
    (dataset, Recall@K)."""
    from ..paper import paper_table

    paper = paper_table("table3")
    paper = paper.assign(method=[_method_label(m, d) for m, d in zip(paper["method"], paper["embedding_dim"])])
    table = paper.pivot_table(index=["backbone", "method"], columns=["dataset", "k"], values="recall", sort=False)
    table.columns = pd.MultiIndex.from_tuples([(d, f"R@{k}") for d, k in table.columns])
    return table


def side_by_side(results: pd.DataFrame) -> pd.DataFrame:
    """Every row of the paper's Table 3 (other methods as published), with our RKD-DA
    students beside the paper's RKD-DA rows; our teacher is a row of its own."""
    paper = paper_rows()
    paper.columns = pd.MultiIndex.from_tuples([("paper", f"{d} {k}") for d, k in paper.columns])
    long = _long(results)
    long["method"] = [_method_label(m, d) for m, d in zip(long["method"], long["embedding_dim"])]
    ours = long.pivot_table(index=["backbone", "method"], columns=["dataset", "k"], values="recall", sort=False)
    datasets = list(results["dataset"].unique())
    ours = ours[sorted(ours.columns, key=lambda c: (datasets.index(c[0]), c[1]))]
    scale = results["scale"].iloc[0] if len(results) else "?"
    ours.columns = pd.MultiIndex.from_tuples([(f"ours, scale={scale}", f"{d} R@{k}") for d, k in ours.columns])
    return paper.join(ours, how="outer").loc[_row_order(paper.index, ours.index)]


def _row_order(paper_index, ours_index) -> list:
    rows = list(paper_index)
    return rows + [r for r in ours_index if r not in rows]


# Claims: those the paper's text makes, which compare RKD-DA with other methods and can
# only be checked on the paper's numbers, and what its RKD-DA rows show, checkable on ours.


def _beats_every_other_method(rows: pd.DataFrame) -> tuple[int, int]:
    """(Ks at which RKD-DA's best row beats every other method's rows, Ks checked)."""
    checks = []
    for _, at_k in rows.groupby("k"):
        checks.append(at_k.loc[at_k["method"] == METHOD, "recall"].max()
                      > at_k.loc[at_k["method"] != METHOD, "recall"].max())
    return sum(checks), len(checks)


def _second_below_abe8(rows: pd.DataFrame) -> tuple[int, int]:
    """(1 if at Recall@1 the best method is ABE8 and the second RKD-DA, else 0; 1)."""
    best = rows[rows["k"] == 1].groupby("method")["recall"].max().sort_values(ascending=False)
    return int(list(best.index[:2]) == ["ABE8", METHOD]), 1


# claim -> (the datasets it is about, the backbones it compares within, the check)
_TEXT_CLAIMS = {
    "RKD-DA beats every other method on CUB-200-2011, with either backbone (Recall@K, every K)":
        (("CUB-200-2011",), ("GoogLeNet", "ResNet50"), _beats_every_other_method),
    "with ResNet50, RKD-DA beats every other method on every dataset (Recall@K, every K)":
        (("CUB-200-2011", "Cars196", "SOP"), ("ResNet50",), _beats_every_other_method),
    "with GoogLeNet, RKD-DA is second on Cars196 and SOP, below ABE8 only (Recall@1)":
        (("Cars196", "SOP"), ("GoogLeNet",), _second_below_abe8),
}
# not said in the text: what the RKD-DA rows of the table show
_OWN_CLAIMS = (
    "(table) RKD-DA GoogLeNet-512 beats GoogLeNet-128 (Recall@K, every K)",
    "(table) RKD-DA ResNet50-128 beats GoogLeNet-128 (Recall@K, every K)",
)


def _paper_text_claims() -> dict[str, dict[str, str]]:
    """claim -> dataset -> "held/checked" on the paper's numbers (summed over backbones)."""
    from ..paper import paper_table

    paper = paper_table("table3")
    out: dict[str, dict[str, str]] = {}
    for claim, (datasets, backbones, check) in _TEXT_CLAIMS.items():
        out[claim] = {}
        for dataset in datasets:
            results = [check(paper[(paper["dataset"] == dataset) & (paper["backbone"] == b)]) for b in backbones]
            out[claim][dataset] = f"{sum(h for h, _ in results)}/{sum(t for _, t in results)}"
    return out


def _own_claims(df: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """The two comparisons between RKD-DA rows, on one dataset's rows (long or wide)."""
    def recalls(backbone: str, dim: int) -> dict[int, float]:
        hit = df[(df["backbone"] == backbone) & (df["method"] == METHOD) & (df["embedding_dim"] == dim)]
        return dict(zip(hit["k"], hit["recall"]))

    out = {}
    for claim, (a, b) in zip(_OWN_CLAIMS, ((("GoogLeNet", 512), ("GoogLeNet", 128)),
                                          (("ResNet50", 128), ("GoogLeNet", 128)))):
        better, worse = recalls(*a), recalls(*b)
        ks = sorted(set(better) & set(worse))
        out[claim] = (sum(better[k] > worse[k] for k in ks), len(ks))
    return out


def _long(results: pd.DataFrame) -> pd.DataFrame:
    ks = [c for c in results.columns if c.startswith("recall_at_")]
    long = results.melt(id_vars=["dataset", "backbone", "method", "embedding_dim"], value_vars=ks,
                        var_name="k", value_name="recall").dropna(subset=["recall"])
    long["k"] = long["k"].str.replace("recall_at_", "", regex=False).astype(int)
    return long


def claims(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 3 claims, checked on its numbers and on ours. The claims of the
    paper's text compare RKD-DA with other methods, which are not run here: on our
    numbers they read "n/a". Cells say how often a claim holds ("4/4": at every K)."""
    from ..paper import paper_table

    rows = []
    for claim, by_dataset in _paper_text_claims().items():
        for dataset, holds in by_dataset.items():
            rows.append({"claim": claim, "source": "paper", "dataset": dataset, "holds": holds})
    for source, frame in (("paper", paper_table("table3")), ("ours", _long(results))):
        for dataset, df in frame.groupby("dataset", sort=False):
            for claim, (held, total) in _own_claims(df).items():
                rows.append({"claim": claim, "source": source, "dataset": dataset,
                             "holds": f"{held}/{total}" if total else "n/a"})
    for dataset in results["dataset"].unique():
        for claim in _TEXT_CLAIMS:
            rows.append({"claim": claim, "source": "ours", "dataset": dataset,
                         "holds": "n/a (other methods not run)"})
    out = pd.DataFrame(rows)
    table = out.pivot_table(index="claim", columns=["source", "dataset"], values="holds", aggfunc="first", sort=False)
    return table.reindex([*_TEXT_CLAIMS, *_OWN_CLAIMS]).fillna("n/a")


def plot(results: pd.DataFrame):
    """Recall@K curves of the RKD-DA rows: the paper's, then ours, one panel per dataset."""
    import matplotlib.pyplot as plt

    from ..paper import paper_table

    scale = results["scale"].iloc[0] if len(results) else "?"
    paper = paper_table("table3")
    panels = [("paper", d, g[g["method"] == METHOD]) for d, g in paper.groupby("dataset", sort=False)]
    ours = _long(results)
    panels += [(f"ours ({scale})", d, g) for d, g in ours.groupby("dataset", sort=False)]
    # one colour per row of the paper's table, the same in every panel
    colours = {f"{s.backbone}-{s.embedding_dim}": f"C{i}" for i, s in enumerate(STUDENTS["paper"])}
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4), squeeze=False)
    for ax, (source, dataset, df) in zip(axes[0], panels):
        for (backbone, method, dim), line in df.groupby(["backbone", "method", "embedding_dim"], sort=False):
            line = line.sort_values("k")
            is_teacher = method == TEACHER_METHOD
            name = f"{backbone}-{dim}"
            ax.plot(range(len(line)), line["recall"], marker="o", ms=3, color="k" if is_teacher else colours.get(name),
                    linestyle=":" if is_teacher else "-", label=name + (" (teacher)" if is_teacher else ""))
            ax.set_xticks(range(len(line)))
            ax.set_xticklabels([str(k) for k in line["k"]])
        ax.set_title(f"{dataset}\n{source}", fontsize=9)
        ax.set_xlabel("K")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("Recall@K (%)")
    fig.tight_layout()
    return fig
