"""Shared machinery of the metric-learning experiments (Tables 1-3, Figures 3 and 4):
build a dataset split, train a triplet teacher, distil students, embed and score.

Each table module only describes *what* to run (a preset per scale and a list of runs);
everything here is the *how*, written once.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .. import data as rkd_data
from .. import models as rkd_models
from ..distill import Distiller
from ..losses.terms import TermContext
from ..methods import get_method
from ..metrics import recall_at_k
from ..runtime import seed_everything
from ..train import TrainConfig, fit

__all__ = [
    "DataSpec",
    "ModelSpec",
    "MetricPreset",
    "load_split",
    "embed",
    "train_embedding_model",
]


@dataclass(frozen=True)
class DataSpec:
    """One dataset of an experiment: its registry name, how it is shown, how it is read."""

    name: str
    display: str
    options: tuple[tuple[str, Any], ...] = ()
    train_transform: str | None = None
    test_transform: str | None = None
    # ci scale only: evaluate on the first n images of each test class, to keep minutes
    max_test_per_class: int | None = None
    # where the dataset lives below ``data_root`` when its archive has no top folder of
    # its own (Cars196); None: the reader finds it in ``data_root`` itself
    subdir: str | None = None
    # Recall@K list of this dataset when it differs from the preset's (SOP: 1, 10, 100, 1000)
    ks: tuple[int, ...] | None = None
    # MPerClassSampler policy for classes with fewer than m images (SOP has many of 2-4)
    small_classes: str = "error"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def build(self, **overrides) -> torch.nn.Module:
        return rkd_models.build_model(self.name, **{**dict(self.options), **overrides})


@dataclass(frozen=True)
class MetricPreset:
    """Everything that decides a metric-learning table at one scale."""

    scale: str
    datasets: tuple[DataSpec, ...]
    teacher: ModelSpec
    teacher_dim: int
    student: ModelSpec
    embedding_dims: tuple[int, ...]
    teacher_train: TrainConfig
    student_train: TrainConfig
    batch_size: int
    m_per_class: int
    batches_per_epoch: int | None = None
    eval_batch_size: int = 256
    threads: int | None = None
    ks: tuple[int, ...] = (1, 2, 4, 8)
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def load_split(spec: DataSpec, data_root: str | None, split: str, train: bool) -> Dataset:
    """The ``split`` of ``spec``; with ``train`` the training transform, else the test one."""
    transform_name = spec.train_transform if train else spec.test_transform
    transform = rkd_data.get_transform(transform_name, train=train) if transform_name else None
    root = data_root
    if spec.subdir is not None and data_root is not None:
        root = str(Path(data_root) / spec.subdir)
    dataset = rkd_data.get_dataset(spec.name, root, split, transform=transform, **dict(spec.options))
    if not train and spec.max_test_per_class is not None:
        dataset = first_per_class(dataset, spec.max_test_per_class)
    return dataset


class _TargetsSubset(Subset):
    """A Subset that keeps ``.targets`` (samplers and metrics read it)."""

    def __init__(self, dataset: Dataset, indices: list[int]):
        super().__init__(dataset, indices)
        all_targets = torch.as_tensor(dataset.targets)
        self.targets = all_targets[torch.as_tensor(indices, dtype=torch.long)].tolist()


def first_per_class(dataset: Dataset, n: int) -> Dataset:
    """The first ``n`` images of each class, in dataset order (deterministic)."""
    counts: dict[int, int] = {}
    keep = []
    for index, target in enumerate(torch.as_tensor(dataset.targets).tolist()):
        if counts.get(target, 0) < n:
            counts[target] = counts.get(target, 0) + 1
            keep.append(index)
    return _TargetsSubset(dataset, keep)


@torch.no_grad()
def embed(model: torch.nn.Module, dataset: Dataset, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (``model(x)["embedding"]``) and labels of every image of ``dataset``, in order."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    outputs, labels = [], []
    for images, targets in loader:
        outputs.append(model(images.to(device))["embedding"].float().cpu())
        labels.append(targets)
    return torch.cat(outputs), torch.cat(labels)


def train_embedding_model(
    preset: MetricPreset,
    *,
    student: torch.nn.Module,
    teacher: torch.nn.Module | None,
    method: str,
    train_config: TrainConfig,
    train_set: Dataset,
    test_set: Dataset,
    device: torch.device,
    seed: int,
    desc: str,
    progress: bool,
    checkpoint_path=None,
    small_classes: str = "error",
) -> dict[str, float]:
    """Train ``student`` with ``method`` (against ``teacher`` if any) and return Recall@K on ``test_set``.

    The model reported is the one after the last step: no model selection on the test set.
    ``small_classes`` is the batch sampler's policy for classes with fewer than
    ``preset.m_per_class`` images (see :class:`rkd.data.MPerClassSampler`).
    """
    method_spec = get_method(method, task="metric")
    distiller = Distiller(student, teacher, method_spec, TermContext.from_models(student, teacher))
    sampler = rkd_data.MPerClassSampler(
        train_set.targets,
        m=preset.m_per_class,
        batch_size=preset.batch_size,
        batches_per_epoch=preset.batches_per_epoch,
        seed=seed,
        small_classes=small_classes,
    )

    def evaluate() -> dict[str, float]:
        embeddings, labels = embed(student, test_set, preset.eval_batch_size, device)
        return {f"recall_at_{k}": v for k, v in recall_at_k(embeddings, labels, preset.ks).items()}

    result = fit(
        distiller,
        train_set,
        sampler,
        train_config,
        device=device,
        checkpoint_path=checkpoint_path,
        evaluate=evaluate,
        progress=progress,
        desc=desc,
    )
    return result.metrics


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def describe(preset: MetricPreset, device: torch.device | str, *, what: str) -> str:
    """A Markdown paragraph saying where the numbers of a run come from."""
    data = "; ".join(f"{d.display} (`{d.name}`" + (f", first {d.max_test_per_class} test images per class" if d.max_test_per_class else "") + ")" for d in preset.datasets)
    lines = [
        f"**Scale:** `{preset.scale}`. {preset.notes}.",
        f"**Data:** {data}. Train and test classes are disjoint (first half of the classes for training, second half for testing).",
        f"**Teacher:** `{preset.teacher.name}`, embedding {preset.teacher_dim}, L2-normalised, trained with triplet loss "
        f"for {preset.teacher_train.steps} steps.",
        f"**Students:** `{preset.student.name}`, embedding sizes {', '.join(map(str, preset.embedding_dims))}, "
        f"{preset.student_train.steps} steps each ({preset.student_train.optimizer}, lr {preset.student_train.lr:g}); "
        f"batches of {preset.batch_size // preset.m_per_class} classes x {preset.m_per_class} images.",
        f"**Evaluation:** {what}; the model after the last step (no model selection on the test set).",
        f"**Run on:** `{device}`, torch {torch.__version__}.",
    ]
    if preset.scale != "paper":
        lines.append(
            "**These are not paper-scale numbers.** They come from stand-in data and small networks; compare "
            "*orderings* between methods with the paper, not values."
        )
    return "\n\n".join(lines)


DRY_RUN_STEPS = 2
DRY_RUN_CLASSES_PER_BATCH = 2


def dry_run_preset(preset: MetricPreset) -> MetricPreset:
    """``preset`` cut down to a CPU smoke test of the full pipeline: the same data,
    models, image sizes, losses and batch composition (``m_per_class``), but
    :data:`DRY_RUN_STEPS` steps per model, batches of two classes, the first embedding
    size only and no pretrained weights (a dry run must not need the network)."""

    def short(config: TrainConfig) -> TrainConfig:
        return replace(config, steps=DRY_RUN_STEPS, milestones=(), checkpoint_every=0)

    def offline(spec: ModelSpec) -> ModelSpec:
        return replace(spec, options=tuple((k, False if k == "pretrained" else v) for k, v in spec.options))

    return replace(
        preset,
        teacher=offline(preset.teacher),
        student=offline(preset.student),
        embedding_dims=preset.embedding_dims[:1],
        teacher_train=short(preset.teacher_train),
        student_train=short(preset.student_train),
        batch_size=DRY_RUN_CLASSES_PER_BATCH * preset.m_per_class,
        batches_per_epoch=None,
        eval_batch_size=min(preset.eval_batch_size, 32),
        threads=preset.threads,
    )


def plan(preset: MetricPreset, student_runs: int, *, title: str) -> str:
    """What a full run of ``preset`` does, in words and step counts."""
    per_dataset = preset.teacher_train.steps + student_runs * preset.student_train.steps
    return (
        f"{title} at scale={preset.scale!r}: for each of {len(preset.datasets)} dataset(s) "
        f"({', '.join(d.display for d in preset.datasets)}): a `{preset.teacher.name}` teacher "
        f"(embedding {preset.teacher_dim}) for {preset.teacher_train.steps} steps, then {student_runs} "
        f"`{preset.student.name}` student runs of {preset.student_train.steps} steps; "
        f"{per_dataset * len(preset.datasets):,} optimiser steps in all, batches of "
        f"{preset.batch_size // preset.m_per_class} classes x {preset.m_per_class} images. "
        f"Output: one row per model with Recall@{','.join(map(str, preset.ks))}."
    )


# ----------------------------------------------------------- helpers of Tables 2-3 and Figures 3-4


def preset_for_dataset(preset: MetricPreset, spec: DataSpec) -> MetricPreset:
    """``preset`` with the Recall@K list of ``spec`` when the dataset has its own (SOP)."""
    return preset if spec.ks is None else replace(preset, ks=tuple(spec.ks))


def feasible_ks(ks: tuple[int, ...], num_items: int) -> tuple[int, ...]:
    """The Ks of ``ks`` that a test set of ``num_items`` images can answer (K <= N - 1).

    Only dry runs need it: their generated trees hold a few images, fewer than
    SOP's K = 1000. A real run keeps every K and fails loudly if one is too large.
    """
    kept = tuple(k for k in ks if k <= num_items - 1)
    if not kept:
        raise ValueError(f"a test set of {num_items} images answers no K of {ks}; generate a larger tree")
    return kept


def train_triplet_teacher(
    preset: MetricPreset,
    *,
    train_set: Dataset,
    test_set: Dataset,
    device: torch.device,
    seed: int,
    progress: bool,
    desc: str,
    small_classes: str = "error",
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Build ``preset.teacher`` (``preset.teacher_dim``, L2-normalised) from ``seed``,
    train it with triplet loss for ``preset.teacher_train`` and return it frozen (eval
    mode, no gradients) with its Recall@K on ``test_set``."""
    seed_everything(seed)
    teacher = preset.teacher.build(embedding_dim=preset.teacher_dim, normalize=True)
    metrics = train_embedding_model(
        preset,
        student=teacher,
        teacher=None,
        method="Triplet",
        train_config=preset.teacher_train,
        train_set=train_set,
        test_set=test_set,
        device=device,
        seed=seed,
        desc=desc,
        progress=progress,
        small_classes=small_classes,
    )
    teacher.eval().requires_grad_(False)
    return teacher, metrics


@torch.no_grad()
def nearest_neighbours(
    embeddings: torch.Tensor, k: int, queries: torch.Tensor | None = None, chunk_size: int = 1024
) -> torch.Tensor:
    """Indices ``[Q, k]`` of the ``k`` nearest neighbours (Euclidean) of each query among
    all ``embeddings``, the query itself excluded, nearest first: the ranking Recall@K
    scores (:func:`rkd.metrics.recall_at_k`). ``queries``: indices into ``embeddings``
    (all of them when None). Ties are broken by ``torch.topk``, deterministically."""
    x = embeddings.float()
    n = x.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and {n - 1} (the other embeddings), got {k}")
    queries = torch.arange(n) if queries is None else torch.as_tensor(queries, dtype=torch.long)
    sq_norms = (x * x).sum(dim=1)
    found = []
    for start in range(0, len(queries), chunk_size):
        chunk = queries[start:start + chunk_size]
        d = sq_norms[chunk, None] - 2.0 * (x[chunk] @ x.T) + sq_norms[None, :]
        d[torch.arange(len(chunk)), chunk] = float("inf")
        found.append(torch.topk(d, k, dim=1, largest=False, sorted=True).indices)
    return torch.cat(found) if found else torch.empty(0, k, dtype=torch.long)


#: key of ``MetricPreset.extra``: dataset name -> the students' TrainConfig when it
#: differs from ``student_train`` (the authors' code trains SOP students 120 epochs, not 80)
STUDENT_TRAIN_BY_DATASET = "student_train_by_dataset"


def student_train_for(preset: MetricPreset, spec: DataSpec) -> TrainConfig:
    """The students' schedule on ``spec``: its own entry in ``preset.extra`` if any."""
    return dict(preset.extra.get(STUDENT_TRAIN_BY_DATASET, {})).get(spec.name, preset.student_train)


def without_pretrained(spec: ModelSpec) -> ModelSpec:
    """``spec`` with ``pretrained=False``: a dry run must not download weights."""
    return replace(spec, options=tuple((k, False if k == "pretrained" else v) for k, v in spec.options))


def dry_run_preset_all_datasets(preset: MetricPreset) -> MetricPreset:
    """:func:`dry_run_preset`, also for the per-dataset student schedules (every model of
    a dry run trains :data:`DRY_RUN_STEPS` steps, whatever its dataset)."""
    short = dry_run_preset(preset)
    extra = dict(short.extra)
    extra.pop(STUDENT_TRAIN_BY_DATASET, None)
    return replace(short, extra=extra)


# The datasets of the metric-learning experiments, shared by Tables 2-3 and Figures 3-4.
# ci: the offline stand-ins (class-disjoint halves); Fashion-MNIST is evaluated on the
# first 400 images of each test class to keep minutes.
FASHION_MNIST_RETRIEVAL = DataSpec(
    "fashion_mnist", "Fashion-MNIST", options=(("protocol", "retrieval"),), max_test_per_class=400
)
# digits upscaled to 28x28, the size the ci networks are built for (as in Table 1)
DIGITS_RETRIEVAL = DataSpec(
    "digits",
    "digits (scikit-learn, 8x8 upscaled to 28x28)",
    options=(("protocol", "retrieval"),),
    train_transform="upscale_28",
    test_transform="upscale_28",
)
# paper: the official releases below ``data_root`` (see rkd.data.retrieval for the layouts)
CUB200_RETRIEVAL = DataSpec("cub200", "CUB-200-2011", train_transform="metric", test_transform="metric")
CARS196_RETRIEVAL = DataSpec("cars196", "Cars196", train_transform="metric", test_transform="metric", subdir="cars196")
SOP_RETRIEVAL = DataSpec(
    "sop",
    "SOP",
    train_transform="metric",
    test_transform="metric",
    ks=(1, 10, 100, 1000),
    # most SOP classes hold 2-4 images: take them all and fill the batch with more
    # classes, as the authors' sampler does
    small_classes="take_all",
)


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Rows as a DataFrame with ``scale`` and ``seed`` last, after every Recall@K column,
    also when datasets measure different Ks (SOP's appear only on its rows)."""
    frame = pd.DataFrame(rows)
    last = [c for c in ("scale", "seed") if c in frame.columns]
    return frame[[c for c in frame.columns if c not in last] + last]
