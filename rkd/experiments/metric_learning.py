"""Shared machinery of the metric-learning experiments (Tables 1-3, Figures 3 and 4):
build a dataset split, train a triplet teacher, distil students, embed and score.

Each table module only describes *what* to run (a preset per scale and a list of runs);
everything here is the *how*, written once.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .. import data as rkd_data
from .. import models as rkd_models
from ..distill import Distiller
from ..losses.terms import TermContext
from ..methods import get_method
from ..metrics import recall_at_k
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
    eval_batch_size: int = 256
    threads: int | None = None
    ks: tuple[int, ...] = (1, 2, 4, 8)
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def load_split(spec: DataSpec, data_root: str | None, split: str, train: bool) -> Dataset:
    """The ``split`` of ``spec``; with ``train`` the training transform, else the test one."""
    transform_name = spec.train_transform if train else spec.test_transform
    transform = rkd_data.get_transform(transform_name, train=train) if transform_name else None
    dataset = rkd_data.get_dataset(spec.name, data_root, split, transform=transform, **dict(spec.options))
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
) -> dict[str, float]:
    """Train ``student`` with ``method`` (against ``teacher`` if any) and return Recall@K on ``test_set``.

    The model reported is the one after the last step: no model selection on the test set.
    """
    method_spec = get_method(method, task="metric")
    context = TermContext(
        student_dim=student.embedding_dim,
        teacher_dim=teacher.embedding_dim if teacher is not None else None,
        student_tap_channels=dict(student.tap_channels),
        teacher_tap_channels=dict(teacher.tap_channels) if teacher is not None else {},
        num_classes=None,
    )
    distiller = Distiller(student, teacher, method_spec, context)
    sampler = rkd_data.MPerClassSampler(
        train_set.targets, m=preset.m_per_class, batch_size=preset.batch_size, seed=seed
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
