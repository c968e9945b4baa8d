"""Shared machinery of the few-shot experiments (Tables 5 and 6): prototypical networks
(Snell et al. 2017) with the 4-conv embedding, a teacher trained with the prototypical
loss, and students of the same architecture (self-distillation) trained with the
prototypical loss plus a distillation method.

What Snell et al. fix, and this module follows at paper scale (their paper and their
code, jakesnell/prototypical-networks):

- training episodes of more classes than the test episodes, with the training shot
  matched to the test shot: Omniglot 60-way with 5 queries per class; miniImageNet
  30-way (1-shot) and 20-way (5-shot) with 15 queries per class;
- Adam, learning rate 1e-3 halved every 2,000 episodes, no weight decay, no data
  augmentation beyond Omniglot's rotations-as-classes;
- test episodes with 15 queries per class, accuracy averaged over the episodes with a
  95% confidence interval (1.96 standard errors).

Snell et al. stop training on the validation loss and retrain on train+val. We train
for a fixed number of episodes on the training split and report the model after the
last one (see each preset's ``notes``): no model selection at all.

Evaluation embeds the test split once per model (eval mode, so an image's embedding
does not depend on the episode it is in) and draws the episodes from those
embeddings: the same seeded episodes for every model of a run, so models are compared
on identical tasks.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data.samplers import EpisodeSampler
from ..distill import Distiller
from ..losses.terms import TermContext
from ..methods import Method, get_method
from ..metrics import mean_confidence_interval
from ..runtime import configure_determinism, seed_everything
from ..train import TrainConfig, fit
from .classification import method_terms
from .metric_learning import DataSpec, ModelSpec, embed, load_split, resolve_device

__all__ = [
    "FewShotPreset",
    "RotationClasses",
    "CachedImages",
    "load_fewshot_split",
    "fewshot_method",
    "episode_accuracies",
    "evaluate_fewshot",
    "train_fewshot_model",
    "run_fewshot",
    "dry_run_preset",
    "plan",
    "describe",
    "student_vs_teacher",
    "plot_gains",
    "TEACHER_ROW",
]

#: the ``method`` of the teacher's rows (the paper's "Teacher" row)
TEACHER_ROW = "Teacher"
#: the method the teacher is trained with: the prototypical loss alone
TEACHER_METHOD = "Prototypical"


@dataclass(frozen=True)
class FewShotPreset:
    """Everything that decides a few-shot table at one scale.

    ``train_way`` maps each shot to the number of classes of its training episodes
    (one teacher and one set of students is trained per shot, as Snell et al. match the
    training shot to the test shot). ``rotation_classes``: angles that turn every
    (class, angle) pair into a class of its own, for datasets whose reader does not do
    it already (Omniglot's does). ``term_options``: method -> loss term -> construction
    options the preset needs (attention blocks on small inputs). ``cache_images``
    decodes every image once and keeps the tensors in memory: exact here because
    Snell et al.'s few-shot inputs have no random augmentation.
    """

    scale: str
    data: DataSpec
    model: ModelSpec
    train: TrainConfig
    train_way: Mapping[int, int]
    train_query: int
    test_ways: tuple[int, ...]
    test_query: int
    test_episodes: int
    episodes_per_epoch: int = 100
    rotation_classes: tuple[int, ...] = ()
    term_options: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    cache_images: bool = False
    eval_batch_size: int = 500
    threads: int | None = None
    notes: str = ""

    @property
    def shots(self) -> tuple[int, ...]:
        return tuple(self.train_way)


# ------------------------------------------------------------------ data


class RotationClasses(Dataset):
    """Every (class, angle) of ``dataset`` as a class of its own, as Vinyals et al. do
    with Omniglot's characters: ``len(angles)`` copies of the dataset, copy ``a``
    rotated counter-clockwise by ``angles[a]`` (multiples of 90 degrees, exact).

    Class ``c * len(angles) + a`` is class ``c`` at ``angles[a]`` (ordered by class,
    then angle, as the Omniglot reader orders them). Images must be tensors [C, H, W].
    """

    def __init__(self, dataset: Dataset, angles: tuple[int, ...]):
        angles = tuple(int(a) for a in angles)
        if not angles or len(set(a % 360 for a in angles)) != len(angles) or any(a % 90 for a in angles):
            raise ValueError(f"angles must be distinct multiples of 90 degrees, got {angles}")
        self.dataset = dataset
        self.angles = angles
        base = torch.as_tensor(dataset.targets).long()
        self.base_size = len(base)
        copies = torch.arange(len(angles)).repeat_interleave(self.base_size)
        self.targets = base.repeat(len(angles)) * len(angles) + copies
        base_names = getattr(dataset, "classes", None) or [str(c) for c in range(int(base.max()) + 1)]
        self.classes = [f"{name}/rot{angle % 360:03d}" for name in base_names for angle in angles]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        copy, base_index = divmod(int(index), self.base_size)
        image, _ = self.dataset[base_index]
        if not isinstance(image, torch.Tensor):
            raise TypeError("RotationClasses needs tensor images [C, H, W]; give the dataset a transform that returns tensors")
        return torch.rot90(image, k=(self.angles[copy] % 360) // 90, dims=(-2, -1)), int(self.targets[index])


class CachedImages(Dataset):
    """Every image of ``dataset`` decoded (and transformed) once, kept as one tensor.

    Exact only for deterministic transforms, which is what Snell et al. use for
    few-shot learning; it turns a per-step JPEG decode into an index.
    """

    def __init__(self, dataset: Dataset, desc: str = "caching images", progress: bool = False):
        images = [dataset[i][0] for i in tqdm(range(len(dataset)), desc=desc, disable=not progress, leave=False)]
        self.images = torch.stack(images)
        self.targets = torch.as_tensor(dataset.targets).long().clone()
        self.classes = list(getattr(dataset, "classes", []))

    @property
    def num_classes(self) -> int:
        return len(self.classes) or int(self.targets.max()) + 1

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.images[index], int(self.targets[index])


def load_fewshot_split(preset: FewShotPreset, data_root: str | None, split: str, progress: bool = False) -> Dataset:
    """The ``split`` of the preset's dataset, with rotation classes and caching applied."""
    dataset = load_split(preset.data, data_root, split, train=split == "train")
    if preset.rotation_classes:
        dataset = RotationClasses(dataset, preset.rotation_classes)
    if preset.cache_images:
        dataset = CachedImages(dataset, desc=f"{preset.data.display} {split}: caching images", progress=progress)
    return dataset


# ------------------------------------------------------------------ methods, training


def fewshot_method(preset: FewShotPreset, name: str) -> Method:
    """Method ``name`` for the few-shot task, with the preset's term options applied."""
    method = get_method(name, task="fewshot")
    for term, options in preset.term_options.get(name, {}).items():
        method = method.with_term_options(term, **options)
    return method


def train_fewshot_model(
    preset: FewShotPreset,
    *,
    student: torch.nn.Module,
    teacher: torch.nn.Module | None,
    method: str,
    shot: int,
    train_set: Dataset,
    device: torch.device,
    seed: int,
    desc: str,
    progress: bool,
) -> None:
    """Train ``student`` on ``preset.train_way[shot]``-way ``shot``-shot episodes with
    ``preset.train_query`` queries per class, with ``method`` against ``teacher``.

    Every model trained with the same ``seed`` and shot sees the same episodes."""
    layout = (preset.train_way[shot], shot, preset.train_query)
    context = TermContext.from_models(student, teacher, episode=layout)
    distiller = Distiller(student, teacher, fewshot_method(preset, method), context)
    sampler = EpisodeSampler(train_set.targets, *layout, episodes=preset.episodes_per_epoch, seed=seed)
    fit(distiller, train_set, sampler, preset.train, device=device, progress=progress, desc=desc)


#: test episodes evaluated at once by :func:`episode_accuracies`
EPISODE_CHUNK = 50


@torch.no_grad()
def episode_accuracies(
    embeddings: torch.Tensor, labels: torch.Tensor, *, n_way: int, k_shot: int, n_query: int, episodes: int, seed: int
) -> torch.Tensor:
    """Accuracy (%) of the prototypical classifier on each of ``episodes`` seeded
    ``n_way``-way ``k_shot``-shot episodes with ``n_query`` queries per class, drawn
    from precomputed ``embeddings`` [N, D] of images with ``labels`` [N].

    A query is classified to the nearest class mean of the support embeddings
    (squared Euclidean distance), as in Snell et al. Computed in float64, in chunks of
    :data:`EPISODE_CHUNK` episodes (1,000 20-way 5-shot episodes of 1,600-d
    embeddings would otherwise gather gigabytes at once)."""
    sampler = EpisodeSampler(labels, n_way, k_shot, n_query, episodes=episodes, seed=seed)
    index = torch.tensor(list(sampler), dtype=torch.long)  # [E, n_way * (k + q)], class-major
    truth = torch.arange(n_way).repeat_interleave(n_query)
    values = []
    for chunk in index.split(EPISODE_CHUNK):
        grouped = embeddings[chunk].view(len(chunk), n_way, k_shot + n_query, -1).double()
        prototypes = grouped[:, :, :k_shot].mean(dim=2)  # [e, n_way, D]
        queries = grouped[:, :, k_shot:].reshape(len(chunk), n_way * n_query, -1)
        predicted = torch.cdist(queries, prototypes).argmin(dim=2)  # [e, n_way * q]
        values.append(100.0 * (predicted == truth).double().mean(dim=1))
    return torch.cat(values)


def evaluate_fewshot(
    model: torch.nn.Module,
    test_set: Dataset,
    preset: FewShotPreset,
    *,
    shot: int,
    device: torch.device,
    seed: int,
) -> list[dict[str, Any]]:
    """Accuracy ± CI95 of ``model`` on ``shot``-shot test episodes of every way in
    ``preset.test_ways``: one dict per way (way, shot, accuracy, ci95, episodes,
    episode_accuracies), the last the per-episode accuracies (a tensor) in episode
    order, for paired comparisons between models tested on the same episodes."""
    embeddings, labels = embed(model, test_set, preset.eval_batch_size, device)
    rows = []
    for way in preset.test_ways:
        values = episode_accuracies(embeddings, labels, n_way=way, k_shot=shot, n_query=preset.test_query,
                                    episodes=preset.test_episodes, seed=seed)
        mean, half_width = mean_confidence_interval(values.tolist())
        rows.append({"way": way, "shot": shot, "accuracy": mean, "ci95": half_width,
                     "episodes": preset.test_episodes, "episode_accuracies": values})
    return rows


def _check_feasible(preset: FewShotPreset, train_set: Dataset, test_set: Dataset) -> None:
    """Fail before training when an episode asks for more classes or images than a split has."""
    problems = []
    for split, dataset, ways, per_class in (
        ("train", train_set, [preset.train_way[s] for s in preset.shots], [s + preset.train_query for s in preset.shots]),
        ("test", test_set, list(preset.test_ways), [s + preset.test_query for s in preset.shots]),
    ):
        counts = torch.bincount(torch.as_tensor(dataset.targets).long())
        counts = counts[counts > 0]
        if max(ways) > len(counts):
            problems.append(f"{split} episodes of {max(ways)} classes, but the {split} split has {len(counts)} classes")
        if max(per_class) > int(counts.min()):
            problems.append(f"{split} episodes need {max(per_class)} images per class, but a {split} class "
                            f"has only {int(counts.min())}")
    if problems:
        raise ValueError(f"{preset.data.display}: " + "; ".join(problems) + ". Lower the ways, shots or queries "
                         "of the preset, or use a dataset with more classes / images.")


def run_fewshot(
    preset: FewShotPreset,
    methods: tuple[str, ...],
    *,
    data_root: str | None,
    device: str,
    seed: int,
    progress: bool,
    dry_run: bool,
    title: str,
) -> pd.DataFrame:
    """For each shot: train a teacher with the prototypical loss, then one student per
    method; evaluate each on that shot at every test way. One row per (model, way).

    Columns: dataset, method ("Teacher" for the teacher), way, shot, accuracy, ci95,
    episodes, gain, gain_ci95, scale, seed. Every model is tested on the same episodes,
    so a student's ``gain`` over its teacher is the mean of the per-episode
    differences and ``gain_ci95`` its paired 95% half-width (NaN on the teacher's rows).
    With ``dry_run`` the full run is described (:func:`plan`) and then run cut down by
    :func:`dry_run_preset` on the CPU; its rows say ``scale="<scale> (dry run)"``.
    """
    for method in methods:  # fail before any training on an unknown name
        fewshot_method(preset, method)
    dev = resolve_device(device)
    configure_determinism(preset.threads)
    label = preset.scale
    if dry_run:
        print(plan(preset, methods, title=title))
        preset = dry_run_preset(preset)
        dev = torch.device("cpu")
        label = f"{label} (dry run)"
    train_set = load_fewshot_split(preset, data_root, "train", progress)
    test_set = load_fewshot_split(preset, data_root, "test", progress)
    _check_feasible(preset, train_set, test_set)

    rows = []
    overall = tqdm(total=len(preset.shots) * (1 + len(methods)), desc=f"{title} ({label})", disable=not progress)
    for shot in preset.shots:
        teacher_episodes: dict[int, torch.Tensor] = {}  # way -> the teacher's per-episode accuracies

        def trained(teacher, method: str, row_name: str) -> torch.nn.Module:
            seed_everything(seed)  # the same initial weights for every model of the table
            model = preset.model.build()
            train_fewshot_model(preset, student=model, teacher=teacher, method=method, shot=shot,
                                train_set=train_set, device=dev, seed=seed,
                                desc=f"{row_name} {preset.train_way[shot]}-way {shot}-shot", progress=progress)
            for result in evaluate_fewshot(model, test_set, preset, shot=shot, device=dev, seed=seed):
                values = result.pop("episode_accuracies")
                gain = gain_ci95 = float("nan")
                if teacher is None:
                    teacher_episodes[result["way"]] = values
                else:
                    gain, gain_ci95 = mean_confidence_interval((values - teacher_episodes[result["way"]]).tolist())
                rows.append({"dataset": preset.data.display, "method": row_name, **result, "gain": gain,
                             "gain_ci95": gain_ci95, "scale": label, "seed": seed})
            overall.update(1)
            return model

        teacher = trained(None, TEACHER_METHOD, TEACHER_ROW)
        teacher.eval().requires_grad_(False)
        for method in methods:
            trained(teacher, method, method)
    overall.close()
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ dry run, plan, describe

DRY_RUN_STEPS = 2
DRY_RUN_WAY = 2
DRY_RUN_QUERY = 1
DRY_RUN_EPISODES = 2


def dry_run_preset(preset: FewShotPreset) -> FewShotPreset:
    """``preset`` cut down to a CPU smoke test: the same data, model, image sizes,
    shots and losses, but :data:`DRY_RUN_STEPS` training episodes per model and
    episodes of :data:`DRY_RUN_WAY` classes with :data:`DRY_RUN_QUERY` query per class
    (a generated tree has few classes and images), :data:`DRY_RUN_EPISODES` test
    episodes."""
    return replace(
        preset,
        train=replace(preset.train, steps=DRY_RUN_STEPS, milestones=(), checkpoint_every=0),
        train_way={shot: DRY_RUN_WAY for shot in preset.shots},
        train_query=DRY_RUN_QUERY,
        test_ways=(DRY_RUN_WAY,),
        test_query=DRY_RUN_QUERY,
        test_episodes=DRY_RUN_EPISODES,
        episodes_per_epoch=DRY_RUN_STEPS,
        eval_batch_size=min(preset.eval_batch_size, 64),
    )


def plan(preset: FewShotPreset, methods: tuple[str, ...], *, title: str) -> str:
    """What a full run of ``preset`` does, in words and step counts."""
    models = 1 + len(methods)
    per_shot = "; ".join(
        f"{shot}-shot: {models} models trained on {way}-way {shot}-shot episodes with {preset.train_query} queries"
        for shot, way in preset.train_way.items()
    )
    return (
        f"{title} at scale={preset.scale!r} on {preset.data.display}: {per_shot}; each model "
        f"{preset.train.steps:,} episodes ({preset.train.optimizer}, lr {preset.train.lr:g}); "
        f"{len(preset.shots) * models * preset.train.steps:,} training episodes in all. Then each model is "
        f"tested on {preset.test_episodes} episodes of each of {', '.join(f'{w}-way' for w in preset.test_ways)} "
        f"at its shot, {preset.test_query} queries per class. Output: one row per (model, way) with accuracy "
        f"and its 95% confidence half-width."
    )


def describe(preset: FewShotPreset, device: torch.device | str, methods: tuple[str, ...] = (), *,
             not_run: str = "") -> str:
    """A Markdown paragraph saying where the numbers of a few-shot run come from;
    ``methods``: the student methods whose loss terms to list; ``not_run`` names the
    rows of the paper's table this scale cannot produce."""
    train = preset.train
    rotations = (f", every class in {len(preset.rotation_classes)} rotations "
                 f"({', '.join(map(str, preset.rotation_classes))} degrees) counted as {len(preset.rotation_classes)} "
                 "classes, as Omniglot's characters are" if preset.rotation_classes else "")
    cap = (f"; the test split capped at the first {preset.data.max_test_per_class} images of each class"
           if preset.data.max_test_per_class else "")
    model_options = ", ".join(f"{k}={v}" for k, v in preset.model.options if k != "taps")
    lines = [
        f"**Scale:** `{preset.scale}`: {preset.notes}.",
        f"**Data:** {preset.data.display} (`{preset.data.name}`){rotations}; training and test classes are "
        f"disjoint{cap}.",
        f"**Model:** `{preset.model.name}` ({model_options}), the same architecture for teacher and students "
        "(self-distillation), every model from the same initial weights.",
        "**Training:** " + "; ".join(
            f"{shot}-shot models on {way}-way {shot}-shot episodes with {preset.train_query} queries per class"
            for shot, way in preset.train_way.items()
        ) + f"; {train.steps:,} episodes each, {train.optimizer} lr {train.lr:g}, x{train.gamma:g} at episodes "
        f"{', '.join(f'{m:,}' for m in train.milestones)}.",
        "**Losses** (weights as trained; RKD and FitNet on the final embedding): teacher: "
        + method_terms(fewshot_method(preset, TEACHER_METHOD)) + "; "
        + "; ".join(f"{name}: {_with_blocks(fewshot_method(preset, name))}" for name in methods) + ".",
        f"**Evaluation:** {preset.test_episodes} test episodes per way with {preset.test_query} queries per "
        "class, the same seeded episodes for every model; accuracy (%) ± the 95% confidence half-width "
        "(1.96 standard errors over episodes); the model after the last episode (no model selection).",
        f"**Run on:** `{device}`, torch {torch.__version__}.",
    ]
    if not_run:
        lines.append(f"**Not run at this scale:** {not_run}")
    if preset.scale != "paper":
        lines.append(
            "**These are not paper-scale numbers.** They come from stand-in data and a network trained for a few "
            "hundred episodes; compare *orderings* with the paper, not values, and read differences inside the "
            "confidence intervals as noise."
        )
    return "\n\n".join(lines)


def _with_blocks(method: Method) -> str:
    blocks = method.options_for("attention").get("blocks") if "attention" in method.term_names else None
    return method_terms(method) + (f" (attention on {', '.join(blocks)})" if blocks else "")


# ------------------------------------------------------------------ claims and plot


def student_vs_teacher(paper: pd.DataFrame, ours: pd.DataFrame, methods: tuple[str, ...], *,
                       paper_dataset: str) -> pd.DataFrame:
    """How often each student beats its teacher, on the paper's numbers and on ours.

    ``paper`` and ``ours`` are long tables (method, way, shot, accuracy and, where
    known, ci95, gain, gain_ci95; ours also dataset). Per method three rows: "beats its
    teacher" counts the (way, shot) settings where the student's accuracy is higher
    ("3/4"); "... by more than both 95% CI half-widths" counts those where the gain
    also exceeds the student's and the teacher's half-widths (a conservative test that
    the paper's printed intervals allow; "n/a" where it prints none); "... on the same
    episodes" counts those where the paired 95% interval of the per-episode gain lies
    above zero (ours only: the paper gives no per-episode numbers). Columns are
    (source, dataset), as :func:`rkd.experiments.summarize_claims` reads them.
    """
    rows = []
    frames = [("paper", paper_dataset, paper)]
    frames += [("ours", dataset, frame) for dataset, frame in ours.groupby("dataset", sort=False)]
    for source, dataset, frame in frames:
        table = frame.set_index(["method", "way", "shot"])
        has_ci = "ci95" in frame.columns
        for method in methods:
            settings = [(w, s) for m, w, s in table.index if m == method and (TEACHER_ROW, w, s) in table.index]
            student = [table.loc[(method, w, s)] for w, s in settings]
            teacher = [table.loc[(TEACHER_ROW, w, s)] for w, s in settings]
            beats = [a["accuracy"] > b["accuracy"] for a, b in zip(student, teacher)]
            clear = ([a["accuracy"] - b["accuracy"] > max(a["ci95"], b["ci95"]) for a, b in zip(student, teacher)]
                     if has_ci else [])
            paired = ([a["gain"] - a["gain_ci95"] > 0 for a in student] if "gain_ci95" in frame.columns else [])
            rows.append({"claim": f"{method} beats its teacher", "source": source, "dataset": dataset,
                         "holds": _count(beats)})
            rows.append({"claim": f"{method} beats its teacher by more than both 95% CI half-widths",
                         "source": source, "dataset": dataset, "holds": _count(clear)})
            rows.append({"claim": f"{method} beats its teacher on the same episodes (paired 95% CI above 0)",
                         "source": source, "dataset": dataset, "holds": _count(paired)})
    return pd.DataFrame(rows).pivot_table(index="claim", columns=["source", "dataset"], values="holds",
                                          aggfunc="first", sort=False)


def _count(checks: list[bool]) -> str:
    return f"{sum(checks)}/{len(checks)}" if checks else "n/a"


def plot_gains(paper: pd.DataFrame, ours: pd.DataFrame, methods: tuple[str, ...], *, title: str):
    """Student minus teacher accuracy (points) per (way, shot) setting and method: the
    paper's panel, with error bars of its two CI95 half-widths combined as if
    independent (sqrt(a^2 + b^2)) where it prints them, then ours, with the paired 95%
    half-width of the per-episode gain."""
    import matplotlib.pyplot as plt
    import numpy as np

    scale = ours["scale"].iloc[0] if len(ours) else "?"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), squeeze=False)
    for ax, (source, frame) in zip(axes[0], (("paper", paper), (f"ours ({scale})", ours))):
        table = frame.set_index(["method", "way", "shot"])
        settings = sorted({(w, s) for m, w, s in table.index if m == TEACHER_ROW})
        width = 0.8 / max(1, len(methods))
        for i, method in enumerate(methods):
            gains, errors = [], []
            for w, s in settings:
                if (method, w, s) not in table.index:
                    gains.append(np.nan)
                    errors.append(0.0)
                    continue
                a, b = table.loc[(method, w, s)], table.loc[(TEACHER_ROW, w, s)]
                gains.append(a["accuracy"] - b["accuracy"])
                if "gain_ci95" in frame.columns:  # ours: the paired interval over the same episodes
                    errors.append(float(a["gain_ci95"]))
                elif "ci95" in frame.columns:  # the paper's: its two intervals combined as if independent
                    errors.append(float(np.hypot(a["ci95"], b["ci95"])))
                else:
                    errors.append(0.0)
            positions = np.arange(len(settings)) + (i - (len(methods) - 1) / 2) * width
            ax.bar(positions, gains, width=width, yerr=errors if any(errors) else None, capsize=2,
                   color=f"C{i}", label=method)
        ax.axhline(0, color="k", linewidth=0.8)
        ax.set_xticks(range(len(settings)), [f"{w}-way\n{s}-shot" for w, s in settings], fontsize=8)
        ax.set_ylabel("student - teacher (points)")
        ax.set_title(f"{title}: {source}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
