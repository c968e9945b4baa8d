"""Figure 3: how far the models trained on one domain carry to others.

A triplet teacher and an RKD-DA student are trained on one dataset (Cars196 in the
paper); they, and the untrained models they started from (the paper's "initial model",
ImageNet-pretrained there), are evaluated by Recall@1 on the test split of the training
domain and on the test splits of other domains (CUB-200-2011, Stanford Dogs, CIFAR-100).
The paper's finding: the student beats the teacher on the training domain but falls far
below it elsewhere, while the teacher stays close to the initial model; RKD adapts the
model strongly to its training domain.

The paper prints no numbers for this figure (a bar chart only), so there is nothing to
put beside ours but the claims of its text. At ``scale="ci"`` the models train on the
class-disjoint Fashion-MNIST split and the other domain is scikit-learn's digits
(upsampled from 8x8 to 28x28); no pretrained weights exist at that scale, so the
"initial model" is the randomly initialised network training started from.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..metrics import recall_at_k
from ..runtime import configure_determinism, seed_everything
from . import table1
from .metric_learning import (
    CARS196_RETRIEVAL,
    CUB200_RETRIEVAL,
    DIGITS_RETRIEVAL,
    FASHION_MNIST_RETRIEVAL,
    DataSpec,
    MetricPreset,
    describe as describe_preset,
    dry_run_preset_all_datasets,
    embed,
    feasible_ks,
    load_split,
    resolve_device,
    train_embedding_model,
    train_triplet_teacher,
)

__all__ = ["CrossDomainPreset", "PRESETS", "MODELS", "run", "describe", "recall_table", "claims", "plot"]

METHOD = "RKD-DA"

#: the four models of the figure, in its order: (row label, which network, trained?)
MODELS = (
    ("initial model (teacher's network, untrained)", "teacher", False),
    ("initial model (student's network, untrained)", "student", False),
    ("teacher (Triplet)", "teacher", True),
    ("student (RKD-DA)", "student", True),
)

@dataclass(frozen=True)
class CrossDomainPreset:
    """A metric-learning preset whose single dataset is the training domain, plus the
    domains the trained models are only evaluated on."""

    metric: MetricPreset
    other_domains: tuple[DataSpec, ...]
    student_dim: int
    student_l2: bool


# Table 1's presets on the training domain alone: the teacher is then exactly Table 1's
# teacher of that dataset, and the student is trained as Table 1's RKD-DA students are.
_TABLE1 = table1.PRESETS

PRESETS: dict[str, CrossDomainPreset] = {
    "ci": CrossDomainPreset(
        metric=replace(
            _TABLE1["ci"],
            datasets=(FASHION_MNIST_RETRIEVAL,),
            embedding_dims=(128,),
            notes="offline stand-ins: trained on the class-disjoint Fashion-MNIST split; small CNNs from scratch "
            "(Table 1's ci schedules); CPU",
        ),
        # digits are upscaled to the 28x28 the networks trained on Fashion-MNIST read
        other_domains=(DIGITS_RETRIEVAL,),
        student_dim=128,
        student_l2=False,
    ),
    "paper": CrossDomainPreset(
        metric=replace(
            _TABLE1["paper"],
            datasets=(CARS196_RETRIEVAL,),
            embedding_dims=(128,),
            notes="the paper's protocol: ImageNet-pretrained ResNet50-512 teacher and ResNet18-128 student trained "
            "on Cars196, 224x224 crops",
        ),
        other_domains=(
            CUB200_RETRIEVAL,
            DataSpec("stanford_dogs", "Stanford Dogs", test_transform="metric", subdir="stanford_dogs"),
            # CIFAR-100's 32x32 images go through the same resize-to-256, center-crop-224
            DataSpec("cifar100", "CIFAR-100", test_transform="metric", options=(("verify_checksums", True),)),
        ),
        # The paper does not give the student's size for this figure: Table 1's
        # best-performing setting, 128 without L2 normalisation.
        student_dim=128,
        student_l2=False,
    ),
}


def plan(preset: CrossDomainPreset) -> str:
    metric = preset.metric
    train = metric.datasets[0]
    others = ", ".join(d.display for d in preset.other_domains)
    return (
        f"Figure 3 at scale={metric.scale!r}: on {train.display}, a `{metric.teacher.name}-{metric.teacher_dim}` "
        f"triplet teacher for {metric.teacher_train.steps} steps and a `{metric.student.name}-{preset.student_dim}` "
        f"RKD-DA student for {metric.student_train.steps} steps "
        f"({metric.teacher_train.steps + metric.student_train.steps:,} optimiser steps); then Recall@"
        f"{','.join(map(str, metric.ks))} of them and of their untrained initial networks on the test split of "
        f"{train.display} and of {others}. Output: one row per (domain, model)."
    )


def _offline_data(spec: DataSpec) -> DataSpec:
    """A dry run reads a generated tree, which cannot match the official checksums."""
    return replace(spec, options=tuple((k, False if k == "verify_checksums" else v) for k, v in spec.options))


def run(
    scale: str = "ci",
    data_root: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    dry_run: bool = False,
) -> pd.DataFrame:
    """Run Figure 3 at ``scale``; one row per (domain, model).

    Columns: dataset, domain ("training" or "other"), model (see :data:`MODELS`),
    network, trained ("yes"/"no"), recall_at_{1,2,4,8}, scale, seed.

    ``dry_run=True`` prints the plan of the full run, then trains both models for two
    steps on the CPU with the preset's data and networks (no pretrained weights, no
    checksum verification) and evaluates all four on every domain.
    """
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[scale]
    dev = resolve_device(device)
    configure_determinism(preset.metric.threads)
    if dry_run:
        print(plan(preset))
        preset = replace(
            preset,
            metric=dry_run_preset_all_datasets(preset.metric),
            other_domains=tuple(_offline_data(d) for d in preset.other_domains),
        )
        dev = torch.device("cpu")
    label = f"{scale} (dry run)" if dry_run else scale
    metric = preset.metric
    train_spec = metric.datasets[0]

    bar = tqdm(total=2 + len(MODELS) * (1 + len(preset.other_domains)), desc=f"Figure 3 ({scale})",
               disable=not progress)
    train_set = load_split(train_spec, data_root, "train", train=True)
    test_set = load_split(train_spec, data_root, "test", train=False)
    trained: dict[str, torch.nn.Module] = {}
    trained["teacher"], _ = train_triplet_teacher(
        metric, train_set=train_set, test_set=test_set, device=dev, seed=seed, progress=progress,
        desc=f"{train_spec.display} teacher", small_classes=train_spec.small_classes,
    )
    bar.update(1)
    seed_everything(seed)
    trained["student"] = _build_student(preset)
    train_embedding_model(
        metric, student=trained["student"], teacher=trained["teacher"], method=METHOD,
        train_config=metric.student_train, train_set=train_set, test_set=test_set, device=dev, seed=seed,
        desc=f"{train_spec.display} student", progress=progress, small_classes=train_spec.small_classes,
    )
    bar.update(1)
    # the untrained networks, from the same seed, are exactly the weights training began with
    seed_everything(seed)
    initial = {"teacher": metric.teacher.build(embedding_dim=metric.teacher_dim, normalize=True)}
    seed_everything(seed)
    initial["student"] = _build_student(preset)
    networks = {"teacher": f"{metric.teacher.name}-{metric.teacher_dim}",
                "student": f"{metric.student.name}-{preset.student_dim}"}

    rows = []
    domains = [("training", train_spec, test_set)]
    domains += [("other", spec, None) for spec in preset.other_domains]
    for domain, spec, dataset in domains:
        if dataset is None:
            dataset = load_split(spec, data_root, "test", train=False)
        ks = feasible_ks(metric.ks, len(dataset)) if dry_run else metric.ks
        for name, network, is_trained in MODELS:
            model = (trained if is_trained else initial)[network].to(dev).eval()
            embeddings, labels = embed(model, dataset, metric.eval_batch_size, dev)
            recalls = recall_at_k(embeddings, labels, ks)
            rows.append({
                "dataset": spec.display, "domain": domain, "model": name, "network": networks[network],
                "trained": "yes" if is_trained else "no",
                **{f"recall_at_{k}": v for k, v in recalls.items()}, "scale": label, "seed": seed,
            })
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows)


def _build_student(preset: CrossDomainPreset) -> torch.nn.Module:
    return preset.metric.student.build(embedding_dim=preset.student_dim, normalize=preset.student_l2)


def describe(scale: str, device: torch.device | str) -> str:
    """Markdown: where the numbers of a Figure 3 run at ``scale`` come from."""
    preset = PRESETS[scale]
    metric = preset.metric
    text = describe_preset(
        replace(metric, embedding_dims=(preset.student_dim,)), device,
        what=f"Recall@K on the test split of {metric.datasets[0].display} (training domain) and of "
        + ", ".join(d.display for d in preset.other_domains) + " (other domains), each image a query against all "
        "others of its dataset",
    )
    initial = ("the ImageNet-pretrained networks with their embedding layer as initialised" if scale == "paper"
               else "the randomly initialised networks (no pretrained weights exist at this scale)")
    return text + (
        f"\n\n**Figure 3 models:** the teacher and one RKD-DA student (embedding {preset.student_dim}, "
        f"{'with' if preset.student_l2 else 'without'} L2 normalisation; the paper does not give the student's "
        f"size for this figure), both trained on {metric.datasets[0].display} only (the teacher is Table 1's teacher "
        f"of that dataset, and the student is trained as Table 1's RKD-DA students are: same networks, schedules, "
        f"data and seed), and the initial models: "
        f"{initial}, from the same seed, i.e. exactly the weights training started from. The paper's figure "
        f"shows one initial model without saying which network; we show both."
        "\n\n**The paper prints no numbers for Figure 3** (a bar chart only): only its text's claims can be "
        "compared with ours."
    )


# ---------------------------------------------------------------- the paper's claims

_PAPER_SAYS = "stated (bar chart, no numbers)"


def _r1(df: pd.DataFrame, model: str) -> float | None:
    hit = df.loc[df["model"] == model, "recall_at_1"]
    return float(hit.iloc[0]) if len(hit) else None


_INIT_T, _INIT_S, _TEACHER, _STUDENT = (m[0] for m in MODELS)


def _check(df: pd.DataFrame, domain: str) -> dict[str, bool | None]:
    teacher, student = _r1(df, _TEACHER), _r1(df, _STUDENT)
    init_t, init_s = _r1(df, _INIT_T), _r1(df, _INIT_S)
    if domain == "training":
        return {CLAIMS[0]: student > teacher}
    return {
        CLAIMS[1]: student < teacher,
        # the student moves further from where it started than the teacher does
        CLAIMS[2]: abs(teacher - init_t) < abs(student - init_s),
        CLAIMS[3]: student < init_s,
    }


CLAIMS = (
    "on the training domain the student beats the teacher",
    "on other domains the student falls below the teacher",
    "on other domains the teacher stays closer to its initial model than the student to its own",
    "on other domains the student falls below its initial model",
)


def claims(results: pd.DataFrame) -> pd.DataFrame:
    """The claims the paper's text draws from Figure 3, checked on ``results``. Cells
    say on how many domains a claim holds ("1/1"); the paper's column can only say that
    the paper states it (its figure has no numbers)."""
    held: dict[str, list[bool]] = {c: [] for c in CLAIMS}
    for (dataset, domain), df in results.groupby(["dataset", "domain"], sort=False):
        for claim, value in _check(df, domain).items():
            held[claim].append(bool(value))
    rows = [{"claim": c, ("paper", "Cars196 -> CUB, Dogs, CIFAR-100"): _PAPER_SAYS,
             ("ours", _domains_label(results)): f"{sum(v)}/{len(v)}" if v else "n/a"} for c, v in held.items()]
    table = pd.DataFrame(rows).set_index("claim")
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["source", "dataset"])
    return table


def _domains_label(results: pd.DataFrame) -> str:
    train = results.loc[results["domain"] == "training", "dataset"].unique()
    others = results.loc[results["domain"] == "other", "dataset"].unique()
    return f"{', '.join(train)} -> {', '.join(others)}"


def plot(results: pd.DataFrame):
    """Recall@1 bars per domain and model, training domain left of the dashed line."""
    import textwrap

    import matplotlib.pyplot as plt
    import numpy as np

    datasets = list(results["dataset"].unique())
    models = [m[0] for m in MODELS]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(1.5 + 2.6 * len(datasets), 3.6))
    colours = ["0.75", "0.55", "C0", "C3"]
    for i, model in enumerate(models):
        values = [_r1(results[results["dataset"] == d], model) for d in datasets]
        ax.bar(np.arange(len(datasets)) + (i - (len(models) - 1) / 2) * width, values, width,
               label=model, color=colours[i % len(colours)])
    n_train = int((results.drop_duplicates("dataset")["domain"] == "training").sum())
    ax.axvline(n_train - 0.5, color="k", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels([textwrap.fill(d, 18) for d in datasets], fontsize=8)
    ax.set_ylabel("Recall@1 (%)")
    ax.set_title(f"ours, scale={results['scale'].iloc[0]}: training domain | other domains", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def recall_table(results: pd.DataFrame, k: int = 1) -> pd.DataFrame:
    """Recall@``k`` with one row per model and one column per domain, training domain first."""
    table = results.pivot_table(index="model", columns=["domain", "dataset"], values=f"recall_at_{k}", sort=False)
    return table.reindex([m[0] for m in MODELS])
