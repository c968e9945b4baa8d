"""Figure 4: the top-8 retrievals of the teacher (triplet) and of the RKD-DA student for
the same queries, hits (same class as the query) and misses marked.

The paper shows examples on CUB-200-2011 and Cars196 chosen so that "the student gives
better results than the teacher". We show two sets of queries per dataset: a seeded
random draw (what retrieval usually looks like) and, as the paper selected them, the
first queries of a seeded random order where the student has more hits than the
teacher, labelled as such. Beside the pictures, numbers: hits among the top 8 for the
shown queries, and over every query of the test split the mean number of hits, Recall@1
and how often the student has more, as many or fewer hits than the teacher.

``run(scale=...)`` returns one row per (dataset, selection, query, model). At
``scale="ci"`` the models train on the class-disjoint Fashion-MNIST split.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..runtime import configure_determinism, seed_everything
from . import table1
from .metric_learning import (
    CARS196_RETRIEVAL,
    CUB200_RETRIEVAL,
    FASHION_MNIST_RETRIEVAL,
    MetricPreset,
    describe as describe_preset,
    dry_run_preset_all_datasets,
    embed,
    load_split,
    nearest_neighbours,
    resolve_device,
    train_embedding_model,
    train_triplet_teacher,
)

__all__ = ["RetrievalPreset", "PRESETS", "SELECTIONS", "run", "describe", "summary", "plot"]

METHOD = "RKD-DA"
TOP_K = 8
#: how the shown queries are chosen (see the module docstring)
SELECTIONS = ("random", "student has more hits (the paper's choice)")


@dataclass(frozen=True)
class RetrievalPreset:
    metric: MetricPreset
    student_dim: int
    student_l2: bool


# Table 1's presets: the teacher is then exactly Table 1's teacher of each dataset, and
# the student is trained as Table 1's RKD-DA students are.
_TABLE1 = table1.PRESETS

PRESETS: dict[str, RetrievalPreset] = {
    "ci": RetrievalPreset(
        metric=replace(
            _TABLE1["ci"],
            datasets=(FASHION_MNIST_RETRIEVAL,),
            embedding_dims=(128,),
            notes="offline stand-in: the class-disjoint Fashion-MNIST split; small CNNs from scratch (Table 1's ci "
            "schedules); CPU",
        ),
        student_dim=128,
        student_l2=False,
    ),
    "paper": RetrievalPreset(
        metric=replace(
            _TABLE1["paper"],
            datasets=(CUB200_RETRIEVAL, CARS196_RETRIEVAL),
            embedding_dims=(128,),
            notes="the paper's protocol: ImageNet-pretrained ResNet50-512 teacher and ResNet18-128 student, "
            "224x224 crops",
        ),
        # the paper does not give the student's size for this figure: Table 1's best
        # setting, 128 without L2 normalisation
        student_dim=128,
        student_l2=False,
    ),
}


def plan(preset: RetrievalPreset, num_queries: int) -> str:
    metric = preset.metric
    per_dataset = metric.teacher_train.steps + metric.student_train.steps
    return (
        f"Figure 4 at scale={metric.scale!r}: on each of {', '.join(d.display for d in metric.datasets)}, a "
        f"`{metric.teacher.name}-{metric.teacher_dim}` triplet teacher for {metric.teacher_train.steps} steps and a "
        f"`{metric.student.name}-{preset.student_dim}` RKD-DA student for {metric.student_train.steps} steps "
        f"({per_dataset * len(metric.datasets):,} optimiser steps in all); then the top-{TOP_K} neighbours of every "
        f"test image for both. Output: {num_queries} queries x {len(SELECTIONS)} selections x 2 models per dataset."
    )


def run(
    scale: str = "ci",
    data_root: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    num_queries: int = 4,
    datasets: tuple[str, ...] | None = None,
    progress: bool = True,
    dry_run: bool = False,
) -> pd.DataFrame:
    """Run Figure 4 at ``scale``; one row per (dataset, selection, query, model).

    Columns: dataset, selection (see :data:`SELECTIONS`), query (index into the test
    split as evaluated), query_class (label within the split), query_class_name,
    model ("teacher"/"student"), network,
    neighbours and neighbour_classes (top-8, nearest first), hits (neighbours of the
    query's class), then statistics over every test query of the dataset, repeated on
    each of its rows: test_mean_hits (mean hits among the top 8), test_recall_at_1,
    and for the pair: test_student_more_hits / test_same_hits / test_teacher_more_hits
    (% of queries); scale, seed.

    Queries are drawn with ``numpy.random.default_rng(seed)``. A selection with fewer
    than ``num_queries`` qualifying queries shows the ones there are.
    ``dry_run=True``: the plan, then two training steps per model on the CPU.
    """
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(sorted(PRESETS))}")
    if isinstance(num_queries, bool) or not isinstance(num_queries, int) or num_queries < 1:
        raise ValueError(f"num_queries must be a positive int, got {num_queries!r}")
    preset = PRESETS[scale]
    specs = _chosen(preset.metric, datasets)
    dev = resolve_device(device)
    configure_determinism(preset.metric.threads)
    if dry_run:
        print(plan(replace(preset, metric=replace(preset.metric, datasets=specs)), num_queries))
        preset = replace(preset, metric=dry_run_preset_all_datasets(preset.metric))
        dev = torch.device("cpu")
    label = f"{scale} (dry run)" if dry_run else scale
    metric = preset.metric

    rows = []
    bar = tqdm(total=2 * len(specs), desc=f"Figure 4 ({scale})", disable=not progress)
    for spec in specs:
        train_set = load_split(spec, data_root, "train", train=True)
        test_set = load_split(spec, data_root, "test", train=False)
        k = min(TOP_K, len(test_set) - 1)  # a dry run's generated test split may hold fewer than 9 images
        teacher, _ = train_triplet_teacher(
            metric, train_set=train_set, test_set=test_set, device=dev, seed=seed, progress=progress,
            desc=f"{spec.display} teacher", small_classes=spec.small_classes,
        )
        bar.update(1)
        seed_everything(seed)
        student = metric.student.build(embedding_dim=preset.student_dim, normalize=preset.student_l2)
        train_embedding_model(
            metric, student=student, teacher=teacher, method=METHOD, train_config=metric.student_train,
            train_set=train_set, test_set=test_set, device=dev, seed=seed, desc=f"{spec.display} student",
            progress=progress, small_classes=spec.small_classes,
        )
        bar.update(1)

        found = {}
        labels = None
        for role, model in (("teacher", teacher), ("student", student)):
            embeddings, labels = embed(model.to(dev).eval(), test_set, metric.eval_batch_size, dev)
            found[role] = nearest_neighbours(embeddings, k)
        hits = {role: (labels[idx] == labels[:, None]).sum(dim=1) for role, idx in found.items()}
        pair = {
            "test_student_more_hits": 100.0 * float((hits["student"] > hits["teacher"]).float().mean()),
            "test_same_hits": 100.0 * float((hits["student"] == hits["teacher"]).float().mean()),
            "test_teacher_more_hits": 100.0 * float((hits["student"] < hits["teacher"]).float().mean()),
        }
        class_names = _class_names(test_set)
        networks = {"teacher": f"{metric.teacher.name}-{metric.teacher_dim}",
                    "student": f"{metric.student.name}-{preset.student_dim}"}
        for selection, queries in zip(SELECTIONS, _select(hits, num_queries, seed)):
            for query in queries:
                for role in ("teacher", "student"):
                    neighbours = found[role][query]
                    rows.append({
                        "dataset": spec.display, "selection": selection, "query": int(query),
                        "query_class": int(labels[query]), "query_class_name": class_names[int(labels[query])],
                        "model": role, "network": networks[role],
                        "neighbours": tuple(int(i) for i in neighbours),
                        "neighbour_classes": tuple(int(c) for c in labels[neighbours]),
                        "hits": int(hits[role][query]),
                        "test_mean_hits": float(hits[role].float().mean()),
                        "test_recall_at_1": 100.0 * float((labels[found[role][:, 0]] == labels).float().mean()),
                        **pair, "scale": label, "seed": seed,
                    })
    bar.close()
    return pd.DataFrame(rows)


def _class_names(dataset) -> list[str]:
    """The split's class names (label -> name), through the subsets that keep images."""
    while not hasattr(dataset, "classes") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return [str(name) for name in dataset.classes]


def _select(hits: dict[str, torch.Tensor], num_queries: int, seed: int) -> tuple[list[int], list[int]]:
    """The queries of each selection: a seeded random draw, and the first queries of a
    seeded random order where the student has more hits than the teacher."""
    order = np.random.default_rng(seed).permutation(len(hits["teacher"])).tolist()
    student_better = [q for q in order if hits["student"][q] > hits["teacher"][q]]
    return order[:num_queries], student_better[:num_queries]


def _chosen(metric: MetricPreset, datasets: tuple[str, ...] | None):
    if datasets is None:
        return metric.datasets
    by_name = {d.name: d for d in metric.datasets}
    missing = [d for d in datasets if d not in by_name]
    if missing:
        raise ValueError(f"dataset(s) {missing} are not part of Figure 4 at scale {metric.scale!r}; valid: {sorted(by_name)}")
    return tuple(by_name[d] for d in datasets)


def describe(scale: str, device: torch.device | str) -> str:
    """Markdown: where the retrievals of a Figure 4 run at ``scale`` come from."""
    preset = PRESETS[scale]
    text = describe_preset(
        replace(preset.metric, embedding_dims=(preset.student_dim,)), device,
        what=f"the top-{TOP_K} neighbours (Euclidean) of each test image among all others of the test split",
    )
    return text + (
        f"\n\n**Figure 4 models:** the triplet teacher and one RKD-DA student (embedding {preset.student_dim}, "
        f"{'with' if preset.student_l2 else 'without'} L2 normalisation; the paper does not give the student's size "
        f"for this figure); the teacher is Table 1's teacher of each dataset, and the student is trained as Table 1's "
        f"RKD-DA students are (same networks, schedules, data and seed). **Queries:** `random`: a seeded random draw; the other selection repeats the paper's "
        f"choice of examples where the student does better, so it shows the student at its best by construction."
    )


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and model: hits among the top 8 for the shown queries of each
    selection, and the statistics over every test query."""
    shown = results.pivot_table(index=["dataset", "model"], columns="selection", values="hits", aggfunc="sum",
                                sort=False)
    counts = results.groupby(["dataset", "model", "selection"], sort=False)["query"].nunique()
    shown = shown.astype(object)
    for (dataset, model), row in shown.iterrows():
        for selection in row.index:
            n = counts.get((dataset, model, selection), 0)
            shown.loc[(dataset, model), selection] = f"{row[selection]:.0f} / {TOP_K * n}" if n else "—"
    shown.columns = [f"hits in top {TOP_K}, shown queries: {s}" for s in shown.columns]
    whole = results.groupby(["dataset", "model"], sort=False)[["test_mean_hits", "test_recall_at_1"]].first()
    whole.columns = [f"all test queries: mean hits in top {TOP_K}", "all test queries: Recall@1 (%)"]
    table = shown.join(whole)
    order = [(d, m) for d in results["dataset"].unique() for m in ("teacher", "student")]
    return table.loc[[i for i in order if i in table.index]]


def head_to_head(results: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: % of test queries where the student has more, as many or fewer hits
    in its top 8 than the teacher."""
    columns = ["test_student_more_hits", "test_same_hits", "test_teacher_more_hits"]
    table = results.groupby("dataset", sort=False)[columns].first()
    table.columns = ["student more hits (%)", "same (%)", "teacher more hits (%)"]
    return table


def _display_set(spec, data_root: str | None):
    """The test split as evaluated (same images, same order), without the test transform."""
    return load_split(replace(spec, test_transform=None), data_root, "test", train=False)


def _thumbnail(image, size: int = 96) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
        return array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    return np.asarray(image.convert("RGB").resize((size, size)))


def plot(results: pd.DataFrame, data_root: str | None = None, selection: str = SELECTIONS[0]):
    """The retrievals of ``selection``: for each shown query, a teacher row (T) and a
    student row (S): the query, then its top 8, green border for a hit, red for a miss."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; valid: {SELECTIONS}")
    scale = str(results["scale"].iloc[0]).split(" ")[0]
    chosen = results[results["selection"] == selection]
    datasets = list(chosen["dataset"].unique())
    by_display = {d.display: d for d in PRESETS[scale].metric.datasets}
    lines = [(d, q, m) for d in datasets for q in chosen.loc[chosen["dataset"] == d, "query"].unique()
             for m in ("teacher", "student")]
    width = 1 + max((len(n) for n in chosen["neighbours"]), default=TOP_K)
    fig, axes = plt.subplots(len(lines), width, figsize=(1.0 * width, 1.05 * len(lines)), squeeze=False)
    images = {d: _display_set(by_display[d], data_root) for d in datasets}
    for axes_row, (dataset, query, model) in zip(axes, lines):
        row = chosen[(chosen["dataset"] == dataset) & (chosen["query"] == query) & (chosen["model"] == model)].iloc[0]
        cells = [(query, None)] + [(n, c == row["query_class"]) for n, c in zip(row["neighbours"], row["neighbour_classes"])]
        for ax, (index, hit) in zip(axes_row, cells):
            ax.imshow(_thumbnail(images[dataset][index][0]), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if hit is not None:
                ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, linewidth=4,
                                       clip_on=False, edgecolor="tab:green" if hit else "tab:red"))
        for ax in axes_row[len(cells):]:
            ax.axis("off")
        axes_row[0].set_ylabel(f"{'T' if model == 'teacher' else 'S'}  {row['hits']}/{len(cells) - 1}",
                               rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"Figure 4, ours (scale={results['scale'].iloc[0]}), queries: {selection}", fontsize=10)
    fig.tight_layout()
    return fig
