"""The three protocols of the paper as run factories: metric learning (Tables 1-3,
Figures 3-4), classification (Table 4) and few-shot learning (Tables 5-6).

A recipe holds what a protocol fixes at one scale (networks, schedules, batches,
evaluation); its methods turn "a teacher on this dataset" or "an RKD-DA student of
size 16 taught by that teacher" into a :class:`~rkd.runs.spec.Run`. Tables
combine them; the runner trains them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from ..data.splits import DataSpec
from ..methods import get_method
from ..models.spec import ModelSpec
from ..train import TrainConfig
from ..runs.spec import Batches, Evaluation, Run

__all__ = ["Preset", "Pretraining", "Setting", "MetricRecipe", "ClassificationSetup", "FewShotRecipe", "TEACHER",
           "with_ci", "CONVERGED", "CI_CUT", "CI_SEEDS"]

#: the name of each dataset's teacher run
TEACHER = "teacher"


@dataclass(frozen=True)
class Preset:
    """Everything that decides an experiment at one scale: its datasets, the protocol
    recipe, the seeds, and ``grid``, the table's own choices (embedding sizes, methods,
    generations, ...)."""

    scale: str
    datasets: tuple[Any, ...]
    recipe: Any
    seeds: tuple[int, ...] = (0, 1, 2)
    threads: int | None = None
    protocol: str = "authors_code"
    num_workers: int | None = None
    notes: str = ""
    grid: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Setting:
    """A method's loss-term weights and options at one scale, where they are not the
    paper's: a baseline tuned on a validation split (:mod:`rkd.experiments.tuning`)."""

    weights: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def apply(self, run: Run) -> Run:
        """``run`` with these weights and options (its own options win)."""
        options = {**{t: dict(o) for t, o in self.options.items()}, **{t: dict(o) for t, o in run.term_options}}
        return replace(run, term_weights=tuple(self.weights.items()),
                       term_options=tuple((t, tuple(o.items())) for t, o in options.items()))


@dataclass(frozen=True)
class Pretraining:
    """The ci stand-in for ImageNet weights: each network's trunk trained once as a
    classifier on a corpus no downstream set shares, then loaded through the network's
    ``weights_path``, exactly where the paper loads ImageNet weights."""

    data: DataSpec
    train: TrainConfig
    batch_size: int
    seed: int = 0
    #: held-out top-1 also every that many steps (whether the trunk converged)
    eval_every: int = 0

    def run(self, network: ModelSpec, group: str) -> Run:
        return Run(
            name=f"pretrained {network.name}", role="pretrain", task="classification", data=self.data,
            network=network, model_options=(("embedding_dim", None),), method="Baseline", train=self.train,
            batches=Batches("random", size=self.batch_size),
            evaluation=Evaluation("top1", batch_size=500, split="val", every=self.eval_every),
            seed=self.seed, group=group, labels=(("embedding_dim", None),),
        )


@dataclass(frozen=True)
class MetricRecipe:
    """Metric learning (section 4.1): a triplet teacher and distilled students.

    ``pretraining`` (ci): trunks pretrained on the glyph corpus start every network, as
    ImageNet weights do at paper scale (there the networks' ``pretrained`` option).
    ``by_dataset``: dataset name -> (teacher schedule, student schedule) where a dataset
    has its own (Stanford Online Products)."""

    teacher: ModelSpec
    teacher_dim: int
    student: ModelSpec
    teacher_train: TrainConfig
    student_train: TrainConfig
    batches: Batches
    evaluation: Evaluation
    pretraining: Pretraining | None = None
    by_dataset: Mapping[str, tuple[TrainConfig, TrainConfig]] = field(default_factory=dict)
    ks_by_dataset: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    batch_options_by_dataset: Mapping[str, tuple[tuple[str, Any], ...]] = field(default_factory=dict)
    #: method -> its :class:`Setting` at this scale (tuned baselines); the others are the paper's
    settings: Mapping[str, Setting] = field(default_factory=dict)

    def schedules(self, data: DataSpec) -> tuple[TrainConfig, TrainConfig]:
        return self.by_dataset.get(data.name, (self.teacher_train, self.student_train))

    def _evaluation(self, data: DataSpec) -> Evaluation:
        ks = self.ks_by_dataset.get(data.name)
        return self.evaluation if ks is None else replace(self.evaluation, ks=ks)

    def _batches(self, data: DataSpec) -> Batches:
        extra = self.batch_options_by_dataset.get(data.name, ())
        return replace(self.batches, options=tuple({**dict(self.batches.options), **dict(extra)}.items()))

    def pretrain_runs(self, data: DataSpec, *networks: ModelSpec) -> list[Run]:
        if self.pretraining is None:
            return []
        return [self.pretraining.run(n, data.name) for n in dict.fromkeys(networks or (self.teacher, self.student))]

    def _init(self, network: ModelSpec) -> str | None:
        return None if self.pretraining is None else f"pretrained {network.name}"

    @staticmethod
    def _labels(dim: int, l2: bool, labels: Mapping[str, Any] | None = None) -> tuple[tuple[str, Any], ...]:
        """The result columns of a metric-learning run: its embedding size and normalisation first."""
        return (("embedding_dim", dim), ("l2_normalize", "yes" if l2 else "no"), *(labels or {}).items())

    def teacher_run(self, data: DataSpec) -> Run:
        """The triplet teacher of ``data`` (embedding ``teacher_dim``, L2-normalised)."""
        return Run(
            name=TEACHER, role="teacher", task="metric", data=data, network=self.teacher,
            model_options=(("embedding_dim", self.teacher_dim), ("normalize", True)), method="Triplet",
            train=self.schedules(data)[0], batches=self._batches(data), evaluation=self._evaluation(data),
            init=self._init(self.teacher), labels=self._labels(self.teacher_dim, True),
        )

    def student_run(self, data: DataSpec, name: str, *, method: str, dim: int, l2: bool,
                    network: ModelSpec | None = None, teacher: str | None = TEACHER, role: str = "student",
                    labels: Mapping[str, Any] | None = None) -> Run:
        """A student of ``network`` (default: the recipe's student) trained with ``method``."""
        network = network or self.student
        run = Run(
            name=name, role=role, task="metric", data=data, network=network,
            model_options=(("embedding_dim", dim), ("normalize", l2)), method=method,
            train=self.schedules(data)[1], batches=self._batches(data), evaluation=self._evaluation(data),
            teacher=teacher if get_method(method, "metric").needs_teacher else None, init=self._init(network),
            labels=self._labels(dim, l2, labels),
        )
        return self.settings[method].apply(run) if method in self.settings else run

    def initial_run(self, data: DataSpec, name: str, *, network: ModelSpec, dim: int, l2: bool,
                    labels: Mapping[str, Any] | None = None) -> Run:
        """``network`` as training starts it (pretrained trunk, new embedding layer), only evaluated."""
        return Run(
            name=name, role="initial", task="metric", data=data, network=network,
            model_options=(("embedding_dim", dim), ("normalize", l2)), evaluation=replace(
                self._evaluation(data), every=0),
            init=self._init(network), labels=self._labels(dim, l2, labels),
        )


@dataclass(frozen=True)
class ClassificationSetup:
    """Classification (section 4.2) on one dataset: its teacher, student and schedules
    (the paper pairs each dataset with its own)."""

    data: DataSpec
    teacher: ModelSpec
    student: ModelSpec
    train: TrainConfig
    batch_size: int
    teacher_train: TrainConfig | None = None
    evaluation: Evaluation = Evaluation("top1")
    epochs: int | None = None
    #: method -> its :class:`Setting` at this scale (tuned baselines); the others are the paper's
    settings: Mapping[str, Setting] = field(default_factory=dict)

    def teacher_run(self) -> Run:
        return Run(
            name=TEACHER, role="teacher", task="classification", data=self.data, network=self.teacher,
            method="Baseline", train=self.teacher_train or self.train, batches=Batches("random", size=self.batch_size),
            evaluation=self.evaluation,
        )

    def student_run(self, method: str) -> Run:
        run = Run(
            name=method, role="student", task="classification", data=self.data, network=self.student,
            method=method, train=self.train, batches=Batches("random", size=self.batch_size),
            evaluation=self.evaluation, teacher=TEACHER if get_method(method, "classification").needs_teacher else None,
        )
        return self.settings[method].apply(run) if method in self.settings else run


@dataclass(frozen=True)
class FewShotRecipe:
    """Few-shot learning (section 4.3): prototypical networks self-distilled, one teacher
    and set of students per shot (Snell et al. match the training shot to the test's).

    ``train_way``: shot -> classes of the training episodes. ``settings``: method -> its
    :class:`Setting` (attention's blocks on small inputs, tuned weights). ``eval_every``:
    the test episodes also every that many steps (whether the run converged)."""

    network: ModelSpec
    train: TrainConfig
    train_way: Mapping[int, int]
    train_query: int
    test_ways: tuple[int, ...]
    test_query: int
    test_episodes: int
    episodes_per_epoch: int = 100
    settings: Mapping[str, Setting] = field(default_factory=dict)
    eval_batch_size: int = 500
    eval_every: int = 0

    def _run(self, data: DataSpec, shot: int, name: str, role: str, method: str, teacher: str | None) -> Run:
        run = Run(
            name=f"{name} ({shot}-shot)", role=role, task="fewshot", data=data, network=self.network,
            method=method, train=self.train,
            batches=Batches("episodes", way=self.train_way[shot], shot=shot, query=self.train_query,
                            per_epoch=self.episodes_per_epoch),
            evaluation=Evaluation("episodes", ways=self.test_ways, shot=shot, query=self.test_query,
                                  episodes=self.test_episodes, batch_size=self.eval_batch_size,
                                  every=self.eval_every),
            teacher=teacher, labels=(("model", name),),
        )
        return self.settings[method].apply(run) if method in self.settings else run

    def teacher_run(self, data: DataSpec, shot: int) -> Run:
        return self._run(data, shot, "Teacher", "teacher", "Prototypical", None)

    def student_run(self, data: DataSpec, shot: int, method: str) -> Run:
        return self._run(data, shot, method, "student", method, f"Teacher ({shot}-shot)")


#: the scale of the stand-in regime whose runs reach a plateau (hours on a CPU: ``make results SCALE=converged``)
CONVERGED = "converged"
#: at ``scale="ci"`` every schedule of the converged regime is cut by this factor (what ``make test`` affords;
#: a page whose converged schedules are longer passes a deeper cut to :func:`with_ci`)
CI_CUT = 10
#: the spacing of the evaluations along a run is the converged regime's divided by this: its ten
#: evaluations become two (at half and at the end), enough to see whether the run still moved
#: (evaluating the test set ten times costs more than the training steps of a cut schedule)
CI_EVALUATION_CUT = 2
#: the seeds at ``scale="ci"``
CI_SEEDS = (0, 1, 2)


def _cut(value: Any, cut: int) -> Any:
    """``value`` with every training schedule cut by ``cut`` (steps, milestones) and
    the spacing of its evaluations along the way by :data:`CI_EVALUATION_CUT`; the
    pretrained trunks are left whole: they are shared with the converged regime and are
    what the students start from."""
    if isinstance(value, TrainConfig):
        return replace(value, steps=max(1, value.steps // cut),
                       milestones=tuple(sorted({max(1, m // cut) for m in value.milestones})),
                       checkpoint_every=value.checkpoint_every // cut)
    if isinstance(value, Evaluation):
        return replace(value, every=value.every // CI_EVALUATION_CUT if value.every else 0)
    if isinstance(value, (Pretraining, Setting, DataSpec, ModelSpec)):
        return value
    if is_dataclass(value) and not isinstance(value, type):  # a recipe: its evaluations' spacing is eval_every
        return replace(value, **{f.name: getattr(value, f.name) // CI_EVALUATION_CUT if f.name == "eval_every" else
                                 _cut(getattr(value, f.name), cut) for f in fields(value) if f.init})
    if isinstance(value, Mapping):
        return {k: _cut(v, cut) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_cut(v, cut) for v in value)
    return value


def with_ci(presets: Mapping[str, Preset], cut: int = CI_CUT) -> dict[str, Preset]:
    """``presets`` with ``"ci"`` derived from ``"converged"`` (the stand-in regime whose runs
    reach a plateau): the same runs with every schedule cut ``cut``-fold (:data:`CI_CUT` unless the
    page's schedules are longer) and the seeds of
    :data:`CI_SEEDS`, short enough for ``make test`` to verify. Most of its runs stop before
    their plateau, and a page gives no verdict on a comparison with such a run; the converged
    regime's pages answer the claims."""
    converged = presets[CONVERGED]
    ci = replace(converged, scale="ci", seeds=CI_SEEDS, datasets=_cut(converged.datasets, cut),
                 recipe=_cut(converged.recipe, cut),
                 notes=f"the converged regime (`scale=\"converged\"`) with every schedule cut {cut}-fold and "
                       f"{len(CI_SEEDS)} seeds, what `make test` can retrain: its runs stop before their plateau; "
                       + converged.notes)
    return {"ci": ci, **presets}
