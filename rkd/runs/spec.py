"""The protocol as data: a training run (:class:`Run`) with its batches (:class:`Batches`)
and its evaluation (:class:`Evaluation`).

A table (:mod:`rkd.experiments`) declares its runs as :class:`Run` s naming which run
teaches which; :func:`rkd.runs.run_experiment` trains and evaluates them. How a kind of
batches is drawn and a kind of evaluation measured lives in :mod:`rkd.runs.policies`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..data.splits import DataSpec
from ..models.spec import ModelSpec
from ..train import TrainConfig

__all__ = ["Batches", "Evaluation", "Run", "ROLES"]

#: what a run is for; shown in plans and results
ROLES = ("pretrain", "teacher", "initial", "student", "generation", "hint")


@dataclass(frozen=True)
class Batches:
    """How training batches are drawn (see :mod:`rkd.data.samplers`; each kind is a
    policy of :data:`rkd.runs.policies.BATCH_POLICIES`).

    ``kind``: ``"m_per_class"`` (``size`` images, ``m`` per class; metric learning),
    ``"random"`` (``size`` images, one shuffle per epoch; classification) or
    ``"episodes"`` (``way`` classes x (``shot`` + ``query``) images; few-shot).
    ``per_epoch``: batches per epoch when the sampler's natural epoch is not used.
    ``options``: further keyword arguments of the sampler (e.g. ``small_classes``).
    """

    kind: str
    size: int = 0
    m: int = 0
    way: int = 0
    shot: int = 0
    query: int = 0
    per_epoch: int | None = None
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Evaluation:
    """What is measured on a trained model, on the test split of its data (and of
    ``domains``, other datasets it is only evaluated on); each kind is a policy of
    :data:`rkd.runs.policies.EVALUATION_POLICIES`.

    ``kind``: ``"recall"`` (Recall@``ks``), ``"top1"`` or ``"episodes"`` (prototypical
    accuracy on ``episodes`` seeded test episodes of every way in ``ways`` at ``shot``,
    ``query`` queries per class), or ``"none"``. ``every``: also evaluate every that
    many steps, for the "best on test, as the authors selected" column (0: only after
    the last step; never used for our own verdicts).
    """

    kind: str
    ks: tuple[int, ...] = ()
    ways: tuple[int, ...] = ()
    shot: int = 0
    query: int = 0
    episodes: int = 0
    batch_size: int = 256
    every: int = 0
    domains: tuple[DataSpec, ...] = ()
    #: the split it is measured on (the pretraining corpus has a held-out "val" split)
    split: str = "test"
    #: retrieval with a teacher: also the share of test queries whose top ``head_to_head``
    #: holds more correct images for the student than for its teacher, and the reverse
    #: (Figure 4's claim is about queries, not about Recall@1); 0: not measured
    head_to_head: int = 0


@dataclass(frozen=True)
class Run:
    """One training run (or, with ``train=None``, one model only evaluated), as data.

    ``teacher`` and ``init`` name earlier runs *of the same dataset and seed*: the
    first's model teaches this one, the second's weights start it (a pretrained
    trunk, read through the network's ``weights_path`` as ImageNet weights are at
    paper scale; or a whole earlier model, e.g. FitNet's hint stage). ``labels`` are
    extra columns of its result rows (embedding size, generation, ...). ``seed``: a
    fixed seed for runs that play fixed assets (the pretrained trunk plays ImageNet
    weights, which do not change with the experiment's seed).
    """

    name: str
    role: str
    task: str
    data: DataSpec
    network: ModelSpec
    evaluation: Evaluation
    method: str | None = None
    train: TrainConfig | None = None
    batches: Batches | None = None
    model_options: tuple[tuple[str, Any], ...] = ()
    term_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    #: loss-term weights that replace the method's (a baseline tuned at a scale)
    term_weights: tuple[tuple[str, float], ...] = ()
    teacher: str | None = None
    init: str | None = None
    labels: tuple[tuple[str, Any], ...] = ()
    seed: int | None = None
    #: train only this stage of a multi-stage method, as a run of its own (FitNet's
    #: hint stage and the stage after it, as the authors ran them)
    stage: int | None = None
    #: the runs ``teacher`` and ``init`` may name: those of the same group (default: the
    #: training dataset; a pretraining run on another corpus joins its dataset's group)
    group: str | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"run {self.name!r}: unknown role {self.role!r}; valid: {', '.join(ROLES)}")
        if (self.train is None) != (self.method is None) or (self.train is None) != (self.batches is None):
            raise ValueError(f"run {self.name!r}: give method, train and batches together (or none of them, "
                             f"for a model that is only evaluated)")

    @property
    def scope(self) -> str:
        return self.group or self.data.name

    @property
    def trains(self) -> bool:
        return self.train is not None

    @property
    def classifies(self) -> bool:
        """Whether the run's network has a classifier head (classification, and the
        pretraining of a trunk as a classifier)."""
        return self.task == "classification"

    def with_labels(self, **labels: Any) -> Run:
        """A copy with ``labels`` merged into its labels (result columns)."""
        return replace(self, labels=tuple({**dict(self.labels), **labels}.items()))

    def label(self, key: str, default: Any = None) -> Any:
        return dict(self.labels).get(key, default)
