"""Loss terms: every loss behind one signature, built by name from one context.

A term is an ``nn.Module`` with

    forward(student: dict[str, Tensor], teacher: dict[str, Tensor] | None, labels: Tensor) -> Tensor

where the dicts follow the model output contract (``"embedding"``, ``"logits"``,
``"block2"`` to ``"block4"``). It returns the UNWEIGHTED loss; the method's weight is
applied by :class:`rkd.distill.Distiller`. The term classes are registered in
:data:`LOSS_TERMS` and built with ``LOSS_TERMS.get(name).build(context, **options)``: a
:class:`TermContext` (dimensions of the two models) and the method's options for that
term. A class says without being built whether it reads the teacher (``needs_teacher``),
so a method's runs know whether they need one. Terms that hold parameters (FitNet
regressors, RRD projections) or state (the RRD queue) hold them as submodules and
buffers, so they travel in the Distiller's state_dict.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from rkd.losses.fewshot import prototypical_loss, split_episode
from rkd.losses.individual import FitNetLoss, attention_loss, hkd
from rkd.losses.metric import DarkRankLoss, DistanceWeightedSampler, TripletLoss
from rkd.losses.relational import rkd_angle, rkd_distance
from rkd.losses.rrd import RRDLoss
from rkd.outputs import EMBEDDING, LOGITS, TAP_NAMES
from rkd.registry import Registry

__all__ = ["TermContext", "LossTerm", "LOSS_TERMS"]

@dataclass(frozen=True)
class TermContext:
    """What a term factory may need to know about the two models.

    Attributes:
        student_dim: the student's ``"embedding"`` width.
        teacher_dim: the teacher's ``"embedding"`` width (None without a teacher).
        student_tap_channels / teacher_tap_channels: channels of each feature tap
            (``model.tap_channels``), e.g. ``{"block2": 128, ...}``.
        num_classes: classifier width, when the task has one.
        episode: ``(n_way, k_shot, n_query)`` for few-shot training; the batch layout it
            implies is documented in :func:`rkd.losses.fewshot.split_episode`.
    """

    student_dim: int
    teacher_dim: int | None = None
    student_tap_channels: Mapping[str, int] = field(default_factory=dict)
    teacher_tap_channels: Mapping[str, int] = field(default_factory=dict)
    num_classes: int | None = None
    episode: tuple[int, int, int] | None = None

    @classmethod
    def from_models(cls, student: nn.Module, teacher: nn.Module | None = None, *,
                    num_classes: int | None = None, episode: tuple[int, int, int] | None = None) -> TermContext:
        """Read ``embedding_dim`` and ``tap_channels`` off models that follow the contract."""
        return cls(
            student_dim=student.embedding_dim,
            teacher_dim=None if teacher is None else teacher.embedding_dim,
            student_tap_channels=dict(getattr(student, "tap_channels", {}) or {}),
            teacher_tap_channels=dict(getattr(teacher, "tap_channels", {}) or {}) if teacher is not None else {},
            num_classes=num_classes,
            episode=None if episode is None else tuple(episode),
        )


def _output(outputs: Mapping[str, Tensor] | None, key: str, role: str, term: str) -> Tensor:
    if outputs is None:
        raise ValueError(f"loss term {term!r} needs the {role}'s outputs, got None")
    try:
        return outputs[key]
    except KeyError:
        have = ", ".join(sorted(outputs)) or "nothing"
        hint = " (build the model with taps=(...) to expose feature maps)" if key.startswith("block") else ""
        raise KeyError(f"loss term {term!r} needs {role} output {key!r}, the model returned: {have}{hint}") from None


class LossTerm(nn.Module):
    """Base class. ``needs_teacher`` says whether ``forward`` reads the teacher's outputs.

    ``splits_over_rows`` says whether the term's loss is a sum of parts, one per row of
    the batch, that :meth:`forward_rows` computes for any range of rows (RKD-A: the
    triples whose angle's vertex is the row). Data-parallel processes can then each
    compute their own rows' part against the whole gathered batch instead of all of it
    (:mod:`rkd.train.distributed`, ``angle_anchors="local"``).
    """

    needs_teacher: bool = True
    term_name: str = "term"
    splits_over_rows: bool = False

    @classmethod
    def build(cls, context: TermContext, **options: Any) -> LossTerm:
        """The term for models of ``context`` with the method's ``options`` (its
        constructor's keyword arguments). Terms that size themselves from the models
        (FitNet's regressors, RRD's projections) or the episode (prototypical) override it."""
        return cls(**options)

    def forward(self, student: Mapping[str, Tensor], teacher: Mapping[str, Tensor] | None,
                labels: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The term's UNWEIGHTED loss of a batch, a scalar tensor (the method's weight is
        applied by :class:`rkd.distill.Distiller`).

        Args:
            student: the student's outputs under the model output contract: ``"embedding"``
                [N, D], ``"logits"`` [N, C] where the model has a classifier, and the
                feature taps it was built with (``"block2"`` to ``"block4"``, [N, C, H, W]).
            teacher: the teacher's outputs, the same keys, computed without gradient; None
                when no term of the method ``needs_teacher``.
            labels: [N] class indices of the batch (a few-shot episode in the class-major
                order of :func:`rkd.losses.fewshot.split_episode`).

        Raises:
            KeyError: an output the term reads is missing (naming the ones there are).
        """
        raise NotImplementedError

    def forward_rows(self, student: Mapping[str, Tensor], teacher: Mapping[str, Tensor] | None, labels: Tensor,
                     rows: range) -> Tensor:
        """The part of :meth:`forward`'s loss that belongs to ``rows`` of the batch: over a
        partition of the rows the parts add up to the loss, gradients included. Only for
        terms whose ``splits_over_rows`` is True."""
        raise NotImplementedError(f"loss term {self.term_name!r} is not a sum over rows (splits_over_rows is False); "
                                  f"compute it whole with forward()")


#: loss-term name -> its :class:`LossTerm` class (built with ``.build(context, **options)``):
#: the one registry of loss terms
LOSS_TERMS: Registry[type[LossTerm]] = Registry("loss term")


# ------------------------------------------------------------------------ task losses


class TripletTerm(LossTerm):
    """The triplet loss on the student's ``"embedding"`` with distance-weighted sampling.

    ``squared`` (default True: eq. 12) and ``authors_numerics`` (default False: Wu et
    al.'s sampling) choose between the paper's text and the authors' code; see
    :func:`rkd.losses.triplet_loss` and :class:`rkd.losses.DistanceWeightedSampler`.
    """

    needs_teacher = False
    term_name = "triplet"

    def __init__(self, margin: float = 0.2, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4,
                 squared: bool = True, authors_numerics: bool = False):
        super().__init__()
        sampler = DistanceWeightedSampler(cutoff, nonzero_loss_cutoff, authors_numerics=authors_numerics)
        self.loss = TripletLoss(margin, sampler, squared=squared)

    def forward(self, student, teacher, labels):
        return self.loss(_output(student, EMBEDDING, "student", self.term_name), labels)


class CrossEntropyTerm(LossTerm):
    """Cross-entropy of the student's ``"logits"``."""

    needs_teacher = False
    term_name = "cross_entropy"

    def forward(self, student, teacher, labels):
        return F.cross_entropy(_output(student, LOGITS, "student", self.term_name), labels)


class PrototypicalTerm(LossTerm):
    """Prototypical loss on the student's ``"embedding"`` of a class-major episode batch
    (see :func:`rkd.losses.fewshot.split_episode` for the order the sampler must produce)."""

    needs_teacher = False
    term_name = "prototypical"

    def __init__(self, episode: tuple[int, int, int]):
        super().__init__()
        self.n_way, self.k_shot, self.n_query = (int(v) for v in episode)

    @classmethod
    def build(cls, context: TermContext, **options: Any) -> PrototypicalTerm:
        """The term for the episodes of ``context.episode`` (n_way, k_shot, n_query)."""
        if context.episode is None:
            raise ValueError("prototypical term needs TermContext.episode=(n_way, k_shot, n_query)")
        return cls(context.episode, **options)

    def forward(self, student, teacher, labels):
        embeddings = _output(student, EMBEDDING, "student", self.term_name)
        support, support_labels, query, query_labels = split_episode(
            embeddings, labels, self.n_way, self.k_shot, self.n_query)
        return prototypical_loss(support, support_labels, query, query_labels)

    def extra_repr(self) -> str:
        return f"episode=({self.n_way}, {self.k_shot}, {self.n_query})"


# ------------------------------------------------------------------------ distillation


class _EmbeddingPairTerm(LossTerm):
    """A loss of (student embedding, teacher embedding), optionally L2-normalised first."""

    def __init__(self, normalize: bool = False):
        super().__init__()
        self.normalize = bool(normalize)

    def _pair(self, student, teacher) -> tuple[Tensor, Tensor]:
        s = _output(student, EMBEDDING, "student", self.term_name)
        t = _output(teacher, EMBEDDING, "teacher", self.term_name)
        if self.normalize:
            s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
        return s, t

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"


class RKDDistanceTerm(_EmbeddingPairTerm):
    """RKD-D (eq. 7) on ``"embedding"``. ``normalize=True`` L2-normalises both embeddings
    first, as the authors' classification code does on the pooled features."""

    term_name = "rkd_distance"

    def forward(self, student, teacher, labels):
        return rkd_distance(*self._pair(student, teacher))


class RKDAngleTerm(_EmbeddingPairTerm):
    """RKD-A (eq. 10) on ``"embedding"``; ``normalize`` as for RKD-D. A sum over rows: a
    row's part holds the triples whose angle's vertex it is (``rkd_angle(vertices=...)``)."""

    term_name = "rkd_angle"
    splits_over_rows = True

    def forward(self, student, teacher, labels):
        return rkd_angle(*self._pair(student, teacher))

    def forward_rows(self, student, teacher, labels, rows):
        return rkd_angle(*self._pair(student, teacher), vertices=rows)


class HKDTerm(LossTerm):
    """HKD (eq. 2) on ``"logits"``, tau^2 included (weight 1 = the paper's lambda 16 at tau 4)."""

    term_name = "hkd"

    def __init__(self, temperature: float = 4.0):
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, student, teacher, labels):
        return hkd(_output(student, LOGITS, "student", self.term_name),
                   _output(teacher, LOGITS, "teacher", self.term_name), self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class FitNetTerm(LossTerm):
    """FitNet (eq. 3), summed over the hint outputs (as the authors' code sums them).

    Each hint is ``"embedding"`` (a Linear regressor) or a feature tap (a 1x1 conv
    regressor); the regressors are the submodules ``regressors[hint]``.
    ``learn_regressors=False`` keeps them at their random initialisation, as the
    authors' code did (see :class:`rkd.losses.FitNetLoss`).
    """

    term_name = "fitnet"

    @classmethod
    def build(cls, context: TermContext, **options: Any) -> FitNetTerm:
        """The term sized for the models of ``context``."""
        return cls(context, **options)

    def __init__(self, context: TermContext, hints: Sequence[str] = (*TAP_NAMES, EMBEDDING),
                 learn_regressors: bool = True):
        super().__init__()
        self.learn_regressors = bool(learn_regressors)
        if isinstance(hints, str):
            hints = (hints,)
        if not hints:
            raise ValueError("fitnet term needs at least one hint output")
        self.hints = tuple(hints)
        self.regressors = nn.ModuleDict()
        for hint in self.hints:
            if hint == EMBEDDING:
                if context.teacher_dim is None:
                    raise ValueError("fitnet on 'embedding' needs TermContext.teacher_dim")
                self.regressors[hint] = FitNetLoss(context.student_dim, context.teacher_dim, spatial=False,
                                                   learn_regressor=self.learn_regressors)
                continue
            missing = [role for role, taps in (("student", context.student_tap_channels),
                                               ("teacher", context.teacher_tap_channels)) if hint not in taps]
            if missing:
                raise ValueError(
                    f"fitnet hint {hint!r} is not a tap of the {' and '.join(missing)} "
                    f"(TermContext tap channels: student {dict(context.student_tap_channels)}, teacher "
                    f"{dict(context.teacher_tap_channels)}); build the models with taps={TAP_NAMES}"
                )
            self.regressors[hint] = FitNetLoss(context.student_tap_channels[hint], context.teacher_tap_channels[hint],
                                               learn_regressor=self.learn_regressors)

    def forward(self, student, teacher, labels):
        total = None
        for hint in self.hints:
            loss = self.regressors[hint](_output(student, hint, "student", self.term_name),
                                         _output(teacher, hint, "teacher", self.term_name))
            total = loss if total is None else total + loss
        return total


class AttentionTerm(LossTerm):
    """Attention transfer summed over ``blocks`` (default block2, block3, block4)."""

    term_name = "attention"

    def __init__(self, blocks: Sequence[str] = TAP_NAMES):
        super().__init__()
        self.blocks = (blocks,) if isinstance(blocks, str) else tuple(blocks)
        if not self.blocks:
            raise ValueError("attention term needs at least one block")

    def forward(self, student, teacher, labels):
        return attention_loss([_output(student, b, "student", self.term_name) for b in self.blocks],
                              [_output(teacher, b, "teacher", self.term_name) for b in self.blocks])

    def extra_repr(self) -> str:
        return f"blocks={self.blocks}"


class DarkRankTerm(_EmbeddingPairTerm):
    """DarkRank (HardRank) on ``"embedding"``; ``normalizer`` as in :class:`rkd.losses.DarkRankLoss`
    (default ``"top_k"``, the authors' ``HardDarkRank``)."""

    term_name = "darkrank"

    def __init__(self, alpha: float = 3.0, beta: float = 3.0, k: int | None = 4, normalize: bool = False,
                 normalizer: str = "top_k"):
        super().__init__(normalize)
        self.loss = DarkRankLoss(alpha, beta, k, normalizer=normalizer)

    def forward(self, student, teacher, labels):
        return self.loss(*self._pair(student, teacher))


class RRDTerm(LossTerm):
    """RRD on ``"embedding"``; the projections and the queue live in ``self.loss``."""

    term_name = "rrd"

    @classmethod
    def build(cls, context: TermContext, **options: Any) -> RRDTerm:
        """The term sized for the models of ``context``."""
        return cls(context, **options)

    def __init__(self, context: TermContext, feat_dim: int = 128, queue_size: int = 16384,
                 tau_s: float = 0.04, tau_t: float = 0.10, enqueue_before_loss: bool = False):
        super().__init__()
        if context.teacher_dim is None:
            raise ValueError("rrd term needs TermContext.teacher_dim")
        self.loss = RRDLoss(context.student_dim, context.teacher_dim, feat_dim, queue_size, tau_s, tau_t,
                            enqueue_before_loss=enqueue_before_loss)

    def forward(self, student, teacher, labels):
        return self.loss(_output(student, EMBEDDING, "student", self.term_name),
                         _output(teacher, EMBEDDING, "teacher", self.term_name))


for _term in (TripletTerm, CrossEntropyTerm, PrototypicalTerm, RKDDistanceTerm, RKDAngleTerm, HKDTerm, FitNetTerm,
              AttentionTerm, DarkRankTerm, RRDTerm):
    LOSS_TERMS.register(_term.term_name, _term)
