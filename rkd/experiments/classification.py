"""Shared machinery of the classification experiment (Table 4): train a teacher
classifier with cross-entropy, distil students with every method of the table, report
top-1 accuracy on the test split.

:mod:`rkd.experiments.table4` only says *what* to run (a preset per scale); the *how*
is written here once. A preset holds one :class:`ClassificationSetup` per dataset,
because the paper pairs each dataset with its own teacher, student and schedule
(CIFAR-100: ResNet50 -> VGG11-BN, 200 epochs; Tiny ImageNet: ResNet101 -> ResNet18,
300 epochs).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..distill import Distiller
from ..losses.terms import TermContext
from ..methods import Method, get_method
from ..metrics import accuracy
from ..runtime import configure_determinism, seed_everything
from ..train import TrainConfig, fit
from ..data.samplers import RandomBatchSampler
from .metric_learning import DataSpec, ModelSpec, load_split, resolve_device

__all__ = [
    "ClassificationSetup",
    "ClassificationPreset",
    "sgd_schedule",
    "compressed_schedule",
    "top1_accuracy",
    "train_classifier",
    "run_classification",
    "dry_run_preset",
    "plan",
    "describe",
    "method_terms",
    "TEACHER_ROW",
]

#: the ``method`` of the teacher's row (the paper's "Teacher" row)
TEACHER_ROW = "Teacher"
#: the method the teacher is trained with: cross-entropy alone
TEACHER_METHOD = "Baseline"


@dataclass(frozen=True)
class ClassificationSetup:
    """One dataset of Table 4 with its teacher, student and schedule.

    Every student is trained with ``train``, the teacher with ``teacher_train`` (None:
    ``train`` too, as in the paper), all on batches of ``batch_size`` images drawn by
    :class:`~rkd.data.samplers.RandomBatchSampler` (one shuffle per epoch, the last
    partial batch dropped). ``dry_run_options`` replace dataset options in a dry run
    (the MD5 check of CIFAR-100, which a generated tree cannot pass).
    """

    data: DataSpec
    teacher: ModelSpec
    student: ModelSpec
    train: TrainConfig
    batch_size: int
    teacher_train: TrainConfig | None = None
    epochs: int | None = None  # for the description only: ``train`` is in steps
    dry_run_options: tuple[tuple[str, Any], ...] = ()

    @property
    def teacher_schedule(self) -> TrainConfig:
        return self.teacher_train if self.teacher_train is not None else self.train


@dataclass(frozen=True)
class ClassificationPreset:
    """Everything that decides Table 4 at one scale."""

    scale: str
    setups: tuple[ClassificationSetup, ...]
    eval_batch_size: int = 256
    threads: int | None = None
    notes: str = ""


def sgd_schedule(
    *,
    epochs: int,
    milestones: tuple[int, ...],
    steps_per_epoch: int,
    lr: float = 0.1,
    gamma: float = 0.2,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
) -> TrainConfig:
    """The paper's SGD schedule in optimiser steps: ``epochs`` of ``steps_per_epoch``
    steps, the learning rate multiplied by ``gamma`` at each epoch of ``milestones``."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    return TrainConfig(
        steps=epochs * steps_per_epoch,
        optimizer="sgd",
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        milestones=tuple(m * steps_per_epoch for m in milestones),
        gamma=gamma,
    )


def compressed_schedule(
    steps: int,
    *,
    epochs: int,
    milestones: tuple[int, ...],
    lr: float = 0.1,
    gamma: float = 0.2,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
) -> TrainConfig:
    """A paper schedule of ``epochs`` with lr milestones at ``milestones`` (epochs),
    compressed into ``steps`` optimiser steps: each milestone lands at the same fraction
    of the run (for the ci scale, which cannot afford the paper's epochs)."""
    return TrainConfig(
        steps=steps,
        optimizer="sgd",
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        milestones=tuple(round(steps * m / epochs) for m in milestones),
        gamma=gamma,
    )


@torch.no_grad()
def top1_accuracy(model: torch.nn.Module, dataset: Dataset, batch_size: int, device: torch.device) -> float:
    """Top-1 accuracy (%) of ``model(x)["logits"]`` over every image of ``dataset``."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    logits, labels = [], []
    for images, targets in loader:
        logits.append(model(images.to(device))["logits"].float().cpu())
        labels.append(torch.as_tensor(targets))
    return accuracy(torch.cat(logits), torch.cat(labels))


def train_classifier(
    setup: ClassificationSetup,
    *,
    student: torch.nn.Module,
    teacher: torch.nn.Module | None,
    method: str,
    train_config: TrainConfig,
    train_set: Dataset,
    test_set: Dataset,
    num_classes: int,
    device: torch.device,
    seed: int,
    eval_batch_size: int,
    desc: str,
    progress: bool,
) -> float:
    """Train ``student`` with ``method`` (cross-entropy plus the method's terms, against
    ``teacher``) and return its top-1 accuracy on ``test_set`` after the last step (no
    model selection on the test set)."""
    method_spec = get_method(method, task="classification")
    context = TermContext.from_models(student, teacher, num_classes=num_classes)
    distiller = Distiller(student, teacher, method_spec, context)
    sampler = RandomBatchSampler(len(train_set), setup.batch_size, seed=seed, drop_last=True)
    result = fit(
        distiller,
        train_set,
        sampler,
        train_config,
        device=device,
        evaluate=lambda: {"top1": top1_accuracy(student, test_set, eval_batch_size, device)},
        progress=progress,
        desc=desc,
    )
    return result.metrics["top1"]


def _select(preset: ClassificationPreset, datasets: tuple[str, ...] | None, scale: str) -> tuple[ClassificationSetup, ...]:
    if datasets is None:
        return preset.setups
    by_name = {setup.data.name: setup for setup in preset.setups}
    missing = [d for d in datasets if d not in by_name]
    if missing:
        raise ValueError(f"dataset(s) {missing} are not part of Table 4 at scale {scale!r}; valid: {sorted(by_name)}")
    return tuple(by_name[d] for d in datasets)


def run_classification(
    preset: ClassificationPreset,
    methods: tuple[str, ...],
    *,
    data_root: str | None,
    device: str,
    seed: int,
    datasets: tuple[str, ...] | None,
    progress: bool,
    dry_run: bool,
    title: str = "Table 4",
) -> pd.DataFrame:
    """Train each setup's teacher, then one student per method; one row per model.

    Columns: dataset, model, method ("Teacher" for the teacher), top1, scale, seed.
    With ``dry_run`` the full run is described (:func:`plan`) and then run cut down by
    :func:`dry_run_preset` on the CPU; its rows say ``scale="<scale> (dry run)"``.
    """
    for method in methods:  # fail before any training on a name the registry does not know
        get_method(method, task="classification")
    setups = _select(preset, datasets, preset.scale)
    dev = resolve_device(device)
    configure_determinism(preset.threads)
    label = preset.scale
    if dry_run:
        print(plan(replace(preset, setups=setups), len(methods), title=title))
        preset = dry_run_preset(replace(preset, setups=setups))
        setups = preset.setups
        dev = torch.device("cpu")
        label = f"{label} (dry run)"

    rows = []
    overall = tqdm(total=len(setups) * (1 + len(methods)), desc=f"{title} ({label})", disable=not progress)
    for setup in setups:
        train_set = load_split(setup.data, data_root, "train", train=True)
        test_set = load_split(setup.data, data_root, "test", train=False)
        num_classes = train_set.num_classes

        def trained(model_spec: ModelSpec, teacher, method: str, schedule: TrainConfig) -> tuple[torch.nn.Module, float]:
            seed_everything(seed)  # every model starts from the same seed, whatever ran before
            model = model_spec.build(num_classes=num_classes)
            top1 = train_classifier(
                setup,
                student=model,
                teacher=teacher,
                method=method,
                train_config=schedule,
                train_set=train_set,
                test_set=test_set,
                num_classes=num_classes,
                device=dev,
                seed=seed,
                eval_batch_size=preset.eval_batch_size,
                desc=f"{setup.data.display} {method if teacher is not None else TEACHER_ROW}",
                progress=progress,
            )
            rows.append({"dataset": setup.data.display, "model": model_spec.name,
                         "method": method if teacher is not None else TEACHER_ROW, "top1": top1,
                         "scale": label, "seed": seed})
            overall.update(1)
            return model, top1

        teacher, _ = trained(setup.teacher, None, TEACHER_METHOD, setup.teacher_schedule)
        teacher.eval().requires_grad_(False)
        for method in methods:
            trained(setup.student, teacher, method, setup.train)
    overall.close()
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ dry run, plan, describe

DRY_RUN_STEPS = 2
#: the dry run's learning rate: its teacher is practically untrained, and a FitNet hint
#: regressing a random ResNet101's large block-4 activations at the paper's lr 0.1 can
#: overflow within two steps; the dry run tests the pipeline, not the optimisation
DRY_RUN_LR = 1e-3
#: images per dry-run batch: enough for batch norm and the relational losses (N >= 3
#: makes the angle loss non-trivial), small enough that ResNet101 at 64x64 steps in
#: seconds on a CPU
DRY_RUN_BATCH = 3


def dry_run_preset(preset: ClassificationPreset) -> ClassificationPreset:
    """``preset`` cut down to a CPU smoke test: the same data (``dry_run_options``
    applied), models, image sizes and losses, :data:`DRY_RUN_STEPS` steps per model on
    batches of :data:`DRY_RUN_BATCH` at a learning rate of at most :data:`DRY_RUN_LR`."""

    def two_steps(config: TrainConfig) -> TrainConfig:
        return replace(config, steps=DRY_RUN_STEPS, milestones=(), checkpoint_every=0, lr=min(config.lr, DRY_RUN_LR))

    def short(setup: ClassificationSetup) -> ClassificationSetup:
        options = {**dict(setup.data.options), **dict(setup.dry_run_options)}
        return replace(
            setup,
            data=replace(setup.data, options=tuple(options.items())),
            train=two_steps(setup.train),
            teacher_train=two_steps(setup.teacher_schedule),
            batch_size=DRY_RUN_BATCH,
        )

    return replace(preset, setups=tuple(short(s) for s in preset.setups), eval_batch_size=min(preset.eval_batch_size, 16))


def plan(preset: ClassificationPreset, student_runs: int, *, title: str) -> str:
    """What a full run of ``preset`` does, in words and step counts."""
    parts = []
    total = 0
    for setup in preset.setups:
        steps, teacher_steps = setup.train.steps, setup.teacher_schedule.steps
        total += teacher_steps + student_runs * steps
        epochs = f"{setup.epochs} epochs = " if setup.epochs else ""
        parts.append(
            f"{setup.data.display}: a `{setup.teacher.name}` teacher ({teacher_steps:,} steps), then "
            f"{student_runs} `{setup.student.name}` students, each {epochs}{steps:,} steps of batch "
            f"{setup.batch_size} ({setup.train.optimizer}, lr {setup.train.lr:g} x{setup.train.gamma:g} at steps "
            f"{', '.join(f'{m:,}' for m in setup.train.milestones)})"
        )
    return (
        f"{title} at scale={preset.scale!r}: " + "; ".join(parts)
        + f". {total:,} optimiser steps in all. Output: one row per model with its top-1 test accuracy."
    )


def method_terms(method: Method) -> str:
    """A method's loss terms and weights, stage by stage, as trained, e.g.
    ``"fitnet x1 (first 50% of the steps), then cross_entropy x1"``."""
    stages = []
    for stage in method.stages:
        terms = " + ".join(f"{term} x{weight:g}" for term, weight in stage.terms.items())
        stages.append(terms if len(method.stages) == 1 else f"{terms} ({stage.fraction:.0%} of the steps)")
    return ", then ".join(stages)


def describe(preset: ClassificationPreset, device: torch.device | str, methods: tuple[str, ...] = ()) -> str:
    """A Markdown paragraph saying where the numbers of a Table 4 run come from;
    ``methods``: the student methods whose loss terms to list."""
    lines = [f"**Scale:** `{preset.scale}`: {preset.notes}."]
    for setup in preset.setups:
        train = setup.train
        epochs = f" ({setup.epochs} epochs)" if setup.epochs else ""
        teacher = setup.teacher_schedule
        teacher_steps = ("" if teacher == train else
                         f" (the teacher {teacher.steps:,} steps, lr x{teacher.gamma:g} at steps "
                         f"{', '.join(f'{m:,}' for m in teacher.milestones)})")
        lines.append(
            f"**{setup.data.display}** (`{setup.data.name}`, its train and test splits): teacher "
            f"`{setup.teacher.name}`, student `{setup.student.name}`; every student {train.steps:,} steps{epochs} "
            f"of batch {setup.batch_size}, {train.optimizer.upper()} lr {train.lr:g}, momentum {train.momentum:g}, "
            f"weight decay {train.weight_decay:g}, lr x{train.gamma:g} at steps "
            f"{', '.join(f'{m:,}' for m in train.milestones)}{teacher_steps}."
        )
    lines += [
        "**Losses** (weights as trained; HKD's 1 includes tau^2 = 16, i.e. the paper's lambda 16 at tau 4; RKD "
        "on the L2-normalised pooled feature, FitNet and attention on blocks 2-4): teacher: "
        + method_terms(get_method(TEACHER_METHOD, task="classification")) + "; "
        + "; ".join(f"{name}: {method_terms(get_method(name, task='classification'))}" for name in methods) + ".",
        "**Evaluation:** top-1 accuracy (%) on the whole test split, of the model after the last step "
        "(no model selection on the test set).",
        f"**Run on:** `{device}`, torch {torch.__version__}.",
    ]
    if preset.scale != "paper":
        lines.append(
            "**These are not paper-scale numbers.** They come from stand-in data and small networks trained "
            "for a few hundred steps; compare *orderings* between methods with the paper, not values, and "
            "read differences of a few tenths of a point as noise."
        )
    return "\n\n".join(lines)
