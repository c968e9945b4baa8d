"""Table 2: self-distillation. A triplet teacher is distilled with RKD-DA into a student
of the *same* architecture, without L2 normalisation of the student; the student then
teaches the next generation, three generations in all.

``run(scale=...)`` returns one row per model: generation 0 is the triplet teacher,
generation n the RKD-DA student taught by generation n - 1. At ``scale="paper"`` it is
ResNet50-512 on CUB-200-2011, Cars196 and Stanford Online Products; at ``scale="ci"``
``small_cnn_wide``-512 on the offline stand-ins (Fashion-MNIST and scikit-learn digits,
class-disjoint halves), trained from scratch on the CPU.
"""
from __future__ import annotations

from dataclasses import replace

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
)

__all__ = ["PRESETS", "GENERATIONS", "run", "describe", "side_by_side", "claims", "plot"]

#: generations of students the paper trains
GENERATIONS = 3
METHOD = "RKD-DA"
TEACHER_METHOD = "Triplet (teacher)"

# Table 1's presets with the teacher's network as the student: the teacher of each
# dataset is then exactly Table 1's (same network, schedule, data and seed).
_TABLE1 = table1.PRESETS

PRESETS: dict[str, MetricPreset] = {
    "ci": replace(
        _TABLE1["ci"],
        datasets=_TABLE1["ci"].datasets,  # Fashion-MNIST and digits, read as Table 1 reads them
        student=_TABLE1["ci"].teacher,
        embedding_dims=(_TABLE1["ci"].teacher_dim,),
        notes="offline stand-ins: class-disjoint halves of Fashion-MNIST and digits; small_cnn_wide teacher and "
        "students from scratch (Table 1's ci schedules); CPU",
    ),
    "paper": replace(
        _TABLE1["paper"],
        datasets=(CUB200_RETRIEVAL, CARS196_RETRIEVAL, SOP_RETRIEVAL),
        # every generation starts from ImageNet weights, as the paper's students do
        student=_TABLE1["paper"].teacher,
        embedding_dims=(_TABLE1["paper"].teacher_dim,),
        notes="the paper's protocol: ImageNet-pretrained ResNet50-512 teacher and ResNet50-512 students, "
        "224x224 crops",
        extra={
            # (code) SOP students: 120 epochs of 100 iterations, lr x0.1 at 40 and 80
            STUDENT_TRAIN_BY_DATASET: {
                "sop": replace(_TABLE1["paper"].student_train, steps=120 * 100, milestones=(4000, 8000)),
            }
        },
    ),
}


def _model_label(spec: ModelSpec, dim: int) -> str:
    return f"{spec.name}-{dim}"


def plan(preset: MetricPreset, generations: int) -> str:
    """What a full run of ``preset`` does, dataset by dataset, in optimiser steps."""
    lines = [f"Table 2 at scale={preset.scale!r}: self-distillation over {generations} generation(s)."]
    total = 0
    for spec in preset.datasets:
        student_steps = student_train_for(preset, spec).steps
        total += preset.teacher_train.steps + generations * student_steps
        lines.append(
            f"- {spec.display}: a `{_model_label(preset.teacher, preset.teacher_dim)}` triplet teacher for "
            f"{preset.teacher_train.steps} steps, then {generations} `{_model_label(preset.student, preset.teacher_dim)}` "
            f"RKD-DA students (no L2) of {student_steps} steps each, each taught by the previous one; "
            f"Recall@{','.join(map(str, spec.ks or preset.ks))}."
        )
    lines.append(
        f"{total:,} optimiser steps in all, batches of {preset.batch_size // preset.m_per_class} classes x "
        f"{preset.m_per_class} images. Output: one row per (dataset, generation)."
    )
    return "\n".join(lines)


def run(
    scale: str = "ci",
    data_root: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    generations: int = GENERATIONS,
    datasets: tuple[str, ...] | None = None,
    progress: bool = True,
    dry_run: bool = False,
) -> pd.DataFrame:
    """Run Table 2 at ``scale``; one row per (dataset, generation).

    Columns: dataset, generation (0 is the triplet teacher), model, method,
    l2_normalize, taught_by (the generation that taught it), recall_at_K for the
    dataset's Ks, scale, seed.

    ``dry_run=True`` prints the plan of the full run, then trains every model for two
    steps on the CPU with the preset's data and networks (no pretrained weights); its
    rows say ``scale="<scale> (dry run)"`` and are smoke-test numbers, not results.
    """
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(sorted(PRESETS))}")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ValueError(f"generations must be a positive int (the paper trains {GENERATIONS}), got {generations!r}")
    preset = PRESETS[scale]
    specs = _chosen_datasets(preset, datasets)
    dev = resolve_device(device)
    configure_determinism(preset.threads)
    if dry_run:
        print(plan(replace(preset, datasets=specs), generations))
        preset = dry_run_preset_all_datasets(preset)
        dev = torch.device("cpu")
    label = f"{scale} (dry run)" if dry_run else scale

    rows = []
    overall = tqdm(total=len(specs) * (1 + generations), desc=f"Table 2 ({scale})", disable=not progress)
    for spec in specs:
        train_set = load_split(spec, data_root, "train", train=True)
        test_set = load_split(spec, data_root, "test", train=False)
        data_preset = preset_for_dataset(preset, spec)
        if dry_run:
            data_preset = replace(data_preset, ks=feasible_ks(data_preset.ks, len(test_set)))

        def record(generation: int, model: str, method: str, l2: bool, metrics: dict[str, float]) -> None:
            rows.append(
                {
                    "dataset": spec.display,
                    "generation": generation,
                    "model": model,
                    "method": method,
                    "l2_normalize": "yes" if l2 else "no",
                    "taught_by": generation - 1 if generation else None,
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
        record(0, _model_label(preset.teacher, preset.teacher_dim), TEACHER_METHOD, True, metrics)
        overall.update(1)

        previous = teacher
        for generation in range(1, generations + 1):
            seed_everything(seed)
            # the paper's self-distillation students keep the teacher's embedding size
            # and drop L2 normalisation (section 4.1.2)
            student = preset.student.build(embedding_dim=preset.teacher_dim, normalize=False)
            metrics = train_embedding_model(
                data_preset,
                student=student,
                teacher=previous,
                method=METHOD,
                train_config=student_train_for(data_preset, spec),
                train_set=train_set,
                test_set=test_set,
                device=dev,
                seed=seed,
                desc=f"{spec.display} generation {generation}",
                progress=progress,
                small_classes=spec.small_classes,
            )
            record(generation, _model_label(preset.student, preset.teacher_dim), METHOD, False, metrics)
            student.eval().requires_grad_(False)
            previous = student
            overall.update(1)
    overall.close()
    return tidy(rows).astype({"taught_by": "Int64"})


def _chosen_datasets(preset: MetricPreset, datasets: tuple[str, ...] | None):
    if datasets is None:
        return preset.datasets
    by_name = {d.name: d for d in preset.datasets}
    missing = [d for d in datasets if d not in by_name]
    if missing:
        raise ValueError(
            f"dataset(s) {missing} are not part of Table 2 at scale {preset.scale!r}; valid: {sorted(by_name)}"
        )
    return tuple(by_name[d] for d in datasets)


def describe(scale: str, device: torch.device | str) -> str:
    """Markdown: where the numbers of a Table 2 run at ``scale`` come from."""
    preset = PRESETS[scale]
    text = describe_preset(
        preset, device, what="Recall@K over the test classes, each image a query against all others"
    )
    schedules = "; ".join(
        f"{spec.display}: {student_train_for(preset, spec).steps} steps"
        for spec in preset.datasets
        if student_train_for(preset, spec) is not preset.student_train
    )
    return text + (
        f"\n\n**Self-distillation:** {GENERATIONS} generations of RKD-DA students (lambda_D 1, lambda_A 2, no "
        f"task loss) of the teacher's own architecture and embedding size, *without* L2 normalisation; "
        f"generation n is taught by generation n - 1 (generation 0: the triplet teacher, which is "
        f"Table 1's teacher of the same dataset: same network, schedule, data and seed). Every model starts "
        f"from the same seed."
        + (f" Per-dataset student schedules: {schedules}." if schedules else "")
    )


# ---------------------------------------------------------------- the paper beside ours

_GENERATION_LABELS = {0: "0 (Triplet teacher)"}


def _generation_label(generation: int) -> str:
    return _GENERATION_LABELS.get(int(generation), str(int(generation)))


def _paper_long() -> pd.DataFrame:
    """The paper's Table 2 as rows of (dataset, generation, recall_at_1)."""
    from ..paper import paper_table

    wide = paper_table("table2")
    long = wide.melt(id_vars=["model", "generation"], var_name="dataset", value_name="recall_at_1")
    long["generation"] = long["generation"].map(lambda g: int(str(g).split()[0]))
    return long


def side_by_side(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's Recall@1 per generation (CUB-200-2011, Cars196, SOP) beside ours."""
    paper = _paper_long().pivot_table(index="generation", columns="dataset", values="recall_at_1", sort=False)
    paper.columns = pd.MultiIndex.from_tuples([("paper (Recall@1)", c) for c in paper.columns])
    ours = results.pivot_table(index="generation", columns="dataset", values="recall_at_1", sort=False)
    scale = results["scale"].iloc[0] if len(results) else "?"
    ours.columns = pd.MultiIndex.from_tuples([(f"ours, scale={scale} (Recall@1)", c) for c in ours.columns])
    table = paper.join(ours, how="outer").sort_index()
    table.index = [_generation_label(g) for g in table.index]
    table.index.name = "generation"
    return table


CLAIMS = (
    "generation 1 beats the triplet teacher",
    "every generation beats the triplet teacher",
    "generations 2 and later do not improve on generation 1",
)


def _check_claims(df: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Each claim as (held, checked) on one dataset's rows (generation, recall_at_1)."""
    r1 = df.groupby("generation")["recall_at_1"].first().to_dict()
    teacher, first = r1.get(0), r1.get(1)
    later = [v for g, v in sorted(r1.items()) if g >= 2]
    students = [v for g, v in sorted(r1.items()) if g >= 1]
    checks: dict[str, list[bool]] = {claim: [] for claim in CLAIMS}
    if teacher is not None and first is not None:
        checks[CLAIMS[0]].append(first > teacher)
    if teacher is not None:
        checks[CLAIMS[1]] += [v > teacher for v in students]
    if first is not None:
        checks[CLAIMS[2]] += [not v > first for v in later]
    return {claim: (sum(v), len(v)) for claim, v in checks.items()}


def claims(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 2 claims checked on its numbers and on ``results``; each cell
    says how often the claim holds ("2/3": for two of three generations)."""
    rows = []
    for source, frame in (("paper", _paper_long()), ("ours", results)):
        for dataset, df in frame.groupby("dataset", sort=False):
            for claim, (held, total) in _check_claims(df).items():
                rows.append({"claim": claim, "source": source, "dataset": dataset,
                             "holds": f"{held}/{total}" if total else "n/a"})
    out = pd.DataFrame(rows)
    return out.pivot_table(index="claim", columns=["source", "dataset"], values="holds", aggfunc="first", sort=False)


def plot(results: pd.DataFrame):
    """Recall@1 against generation: the paper's datasets, then ours."""
    import matplotlib.pyplot as plt

    scale = results["scale"].iloc[0] if len(results) else "?"
    panels = [("paper", _paper_long()), (f"ours ({scale})", results)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), squeeze=False)
    for ax, (source, frame) in zip(axes[0], panels):
        for i, (dataset, df) in enumerate(frame.groupby("dataset", sort=False)):
            df = df.sort_values("generation")
            ax.plot(df["generation"], df["recall_at_1"], marker="o", color=f"C{i}", label=dataset)
        ax.set_xticks(sorted(frame["generation"].unique()))
        ax.set_xticklabels(["teacher" if g == 0 else f"gen {g}" for g in sorted(frame["generation"].unique())])
        ax.set_title(source, fontsize=10)
        ax.set_ylabel("Recall@1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
