"""Metric-learning losses: triplet with distance-weighted sampling (eq. 12) and DarkRank.

Where the paper's text and the authors' code (``lenscloth/RKD``, ``metric/loss.py`` and
``metric/pairsampler.py``) differ, both forms are here, chosen by an option; the book's
Fidelity page says which produced the printed numbers:

- :func:`triplet_loss` / :class:`TripletLoss`: ``squared=True`` is eq. 12 (squared
  distances); ``squared=False`` is the code's ``F.triplet_margin_loss(p=2)`` (plain
  distances), which trained the printed teachers and baselines.
- :class:`DistanceWeightedSampler`: ``authors_numerics=False`` samples as Wu et al.
  describe; ``authors_numerics=True`` reproduces the code's float32 normalisation, under
  which every negative weight underflows at embedding size 512 (uniform negatives).
- :class:`DarkRankLoss`: ``normalizer="top_k"`` (default) is the code's ``HardDarkRank``;
  ``"all_remaining"`` normalises over the whole remaining batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..portable import sqrt as portable_sqrt

__all__ = ["triplet_loss", "DistanceWeightedSampler", "TripletLoss", "DarkRankLoss", "DARKRANK_NORMALIZERS"]

# The eps that F.pairwise_distance adds to each difference, ||a - b + eps||: the authors'
# F.triplet_margin_loss(p=2) measures distances this way.
PAIRWISE_DISTANCE_EPS = 1e-6


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.2,
                 squared: bool = True) -> Tensor:
    """The triplet loss averaged over the triplets.

    ``squared=True`` (default): eq. 12 as the paper writes it,
    ``mean [||a - p||^2 - ||a - n||^2 + m]_+``.

    ``squared=False``: the authors' code, ``F.triplet_margin_loss(a, p, n, margin, p=2)``,
    i.e. ``mean [||a - p + eps|| - ||a - n + eps|| + m]_+`` on plain (not squared)
    Euclidean distances, with ``eps = 1e-6`` added to each difference as
    ``F.pairwise_distance`` does. This form trained the paper's teachers and its
    Triplet, FitNet, Attention and DarkRank rows. The same margin 0.2 is a different
    constraint on plain and on squared distances, so the two losses (and their
    gradients) differ on the same triplets.
    """
    if not (anchor.shape == positive.shape == negative.shape) or anchor.dim() != 2:
        raise ValueError(
            f"triplet_loss expects three [T, D] tensors of one shape, got {tuple(anchor.shape)}, "
            f"{tuple(positive.shape)}, {tuple(negative.shape)}"
        )
    if squared:
        positive_distance = (anchor - positive).pow(2).sum(dim=1)
        negative_distance = (anchor - negative).pow(2).sum(dim=1)
    else:
        positive_distance = F.pairwise_distance(anchor, positive, p=2.0, eps=PAIRWISE_DISTANCE_EPS)
        negative_distance = F.pairwise_distance(anchor, negative, p=2.0, eps=PAIRWISE_DISTANCE_EPS)
    return F.relu(positive_distance - negative_distance + margin).mean()


def _class_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    not_self = ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & not_self, ~same


class DistanceWeightedSampler(nn.Module):
    """Distance-weighted negative sampling (Wu et al., 2017), in one of two numerics.

    For every ordered positive pair (a, p) one negative n is drawn with probability
    proportional to ``1 / q(d_an)``, where ``q(d) ~ d^(D-2) (1 - d^2/4)^((D-3)/2)`` is the
    density of distances between uniform points on the unit sphere in R^D, so
    ``log w = (2 - D) log d - ((D - 3)/2) log(1 - d^2/4)``. Distances are clamped below at
    ``cutoff``; weights are zero for same-class points and for ``d >= nonzero_loss_cutoff``
    (their triplets would have zero loss). An anchor with no weighted negative falls back
    to a uniform draw over its other-class points.

    ``authors_numerics=False`` (default), as Wu et al. describe: float64, the embeddings
    used as given (the model's L2-normalised outputs are assumed), and each anchor's
    log-weights shifted by their maximum over its *allowed negatives* before ``exp``, so
    the closest allowed negative always has weight 1 and nothing underflows.

    ``authors_numerics=True`` reproduces the authors' ``DistanceWeighted`` sampler
    (``lenscloth/RKD``, ``metric/pairsampler.py``): the embeddings are L2-normalised
    first (even an unnormalised student's), distances come from the float32 Gram form
    with the diagonal set to 1, and each row's log-weights are shifted by their maximum
    over *all* entries, positives and the anchor itself included. A close positive
    then has a log-weight far above every negative's: at D = 512 a positive at
    distance 0.7 scores about 215 and a negative at 1.2 about 21, ``exp(-194)``
    underflows in float32, every negative weight is 0 and the anchor falls back to
    uniform negatives. So the paper's 512-d teachers were in effect trained with
    uniformly drawn negatives, while at D <= 128 the weights survive. One guard the
    authors' code lacks: ``1 - d^2/4`` is clamped at the smallest float32 so that a
    pair at distance 2 (antipodal, or past it by rounding) gets a finite weight
    instead of NaN; such pairs are beyond ``nonzero_loss_cutoff`` anyway.

    Draws use ``generator`` when given (deterministic for a seeded generator), else the
    global RNG. Returns index tensors (anchor, positive, negative), with no gradient.
    """

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4,
                 generator: torch.Generator | None = None, authors_numerics: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.generator = generator
        self.authors_numerics = bool(authors_numerics)

    def _log_weights(self, distance: Tensor, dim: int, floor: float) -> Tensor:
        return (2.0 - dim) * distance.log() - ((dim - 3.0) / 2.0) * (
            1.0 - 0.25 * (distance * distance)).clamp_min(floor).log()

    def _wu_weights(self, embeddings: Tensor, negative: Tensor) -> Tensor:
        x = embeddings.detach().to(torch.float64)
        norms = (x * x).sum(dim=1)
        # squared distances from the Gram matrix; below the cut-off they are clamped anyway
        squared = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * x @ x.T).clamp_min(self.cutoff ** 2)
        distance = portable_sqrt(squared)
        # q(d) vanishes at d = 2; keep the log finite (such points are beyond the loss cut-off anyway)
        log_weight = self._log_weights(distance, x.shape[1], 1e-12)
        allowed = negative & (distance < self.nonzero_loss_cutoff)
        log_weight = log_weight.masked_fill(~allowed, -math.inf)
        row_max = log_weight.max(dim=1, keepdim=True).values
        return torch.exp(log_weight - torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max)))

    def _authors_weights(self, embeddings: Tensor, negative: Tensor) -> Tensor:
        x = F.normalize(embeddings.detach().to(torch.float32), dim=1)
        n = x.shape[0]
        squared_norms = x.pow(2).sum(dim=1)
        squared = (squared_norms.unsqueeze(1) + squared_norms.unsqueeze(0) - 2 * x @ x.T).clamp_min(1e-12)
        squared.fill_diagonal_(0.0)
        # the diagonal becomes distance 1: the anchor itself takes part in the row maximum
        distance = portable_sqrt(squared + torch.eye(n, dtype=squared.dtype, device=squared.device))
        distance = distance.clamp_min(self.cutoff)
        log_weight = self._log_weights(distance, x.shape[1], torch.finfo(torch.float32).tiny)
        weight = torch.exp(log_weight - log_weight.max(dim=1, keepdim=True).values)
        return weight * (negative & (distance < self.nonzero_loss_cutoff)).to(weight.dtype)

    def negative_weights(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """[N, N] sampling probabilities: row a is the distribution of a's negative
        (float64 for Wu et al.'s numerics, float32 for the authors')."""
        _, negative = _class_masks(labels)
        if self.authors_numerics:
            weight = self._authors_weights(embeddings, negative)
        else:
            weight = self._wu_weights(embeddings, negative)
        no_candidate = weight.sum(dim=1, keepdim=True) == 0
        weight = torch.where(no_candidate, negative.to(weight.dtype), weight)
        total = weight.sum(dim=1, keepdim=True)
        return weight / torch.where(total > 0, total, torch.ones_like(total))  # a row without negatives stays 0

    @torch.no_grad()
    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Triplets for ``embeddings`` [N, D] with ``labels`` [N]: index tensors (anchor,
        positive, negative), one triplet per ordered same-class pair (a, p), a != p, with
        its negative drawn from :meth:`negative_weights`' row a.

        Raises:
            ValueError: shapes other than [N, D] and [N], no class with 2 examples, or an
                anchor with no example of another class in the batch.
        """
        if embeddings.dim() != 2 or labels.shape != (embeddings.shape[0],):
            raise ValueError(
                f"sampler expects [N, D] embeddings and [N] labels, got {tuple(embeddings.shape)} "
                f"and {tuple(labels.shape)}"
            )
        positive, negative = _class_masks(labels)
        anchor_idx, positive_idx = positive.nonzero(as_tuple=True)
        if anchor_idx.numel() == 0:
            raise ValueError(
                "triplet sampling needs at least one class with 2 examples in the batch; "
                "use a class-balanced batch sampler (e.g. 5 images per class)"
            )
        if not negative[anchor_idx].any(dim=1).all():
            raise ValueError("triplet sampling needs at least 2 classes in the batch; use a class-balanced "
                             "batch sampler with 2 or more classes per batch (e.g. MPerClassSampler)")
        weights = self.negative_weights(embeddings, labels)[anchor_idx]
        negative_idx = torch.multinomial(weights.float(), 1, generator=self.generator).squeeze(1)
        return anchor_idx, positive_idx, negative_idx.to(anchor_idx.device)

    def extra_repr(self) -> str:
        return (f"cutoff={self.cutoff}, nonzero_loss_cutoff={self.nonzero_loss_cutoff}, "
                f"authors_numerics={self.authors_numerics}")


class TripletLoss(nn.Module):
    """Triplet loss over sampled triplets: eq. 12 (``squared=True``, margin 0.2) or the
    authors' code's plain-distance form (``squared=False``, see :func:`triplet_loss`).

    ``forward(embeddings, labels)`` draws one negative per ordered positive pair with
    ``sampler`` (default: :class:`DistanceWeightedSampler` with cut-offs 0.5 and 1.4, the
    authors' values) and returns the mean loss over those triplets. Expects the
    model's L2-normalised embeddings and does not normalise them itself, so that an
    unnormalised student trains the way Table 1's "without l2 norm" rows did.
    """

    def __init__(self, margin: float = 0.2, sampler: nn.Module | None = None, squared: bool = True):
        super().__init__()
        self.margin = float(margin)
        self.squared = bool(squared)
        self.sampler = sampler if sampler is not None else DistanceWeightedSampler(0.5, 1.4)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Eq. 12 (or the code's plain-distance form) averaged over the triplets that
        ``sampler`` draws from ``embeddings`` [N, D] and ``labels`` [N]: a scalar. Raises
        the sampler's ValueError on a batch without a class of 2 examples or of 2 classes."""
        anchor, positive, negative = self.sampler(embeddings, labels)
        return triplet_loss(embeddings[anchor], embeddings[positive], embeddings[negative], self.margin,
                            squared=self.squared)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, squared={self.squared}"


#: how DarkRankLoss normalises each Plackett-Luce factor; the first is the default
DARKRANK_NORMALIZERS = ("top_k", "all_remaining")


class DarkRankLoss(nn.Module):
    """DarkRank, HardRank form (Chen, Wang & Zhang, AAAI 2018).

    For each anchor q, the teacher ranks the other points by its score
    ``S_t(q, x) = -alpha * ||t_q - t_x||^beta``; let pi be its top-k (self excluded, in
    order). Under the student's scores ``s_x = -alpha * ||s_q - s_x||^beta`` the
    Plackett-Luce log-likelihood of that order is

        log P(pi | s) = sum_{j=1..k} [ s_{pi_j} - log sum_{x in R_j} exp(s_x) ],

    and the loss is its negative, averaged over anchors. ``normalizer`` chooses R_j:

    - ``"top_k"`` (default): R_j = {pi_j, ..., pi_k}, the rest of the top-k list only.
      This is the RKD authors' ``HardDarkRank`` (``lenscloth/RKD``, ``metric/loss.py``,
      ``permute_len=4``), the form the paper's grid search (alpha 3, beta 3, lambda 1)
      was run with and the DarkRank column was printed from.
    - ``"all_remaining"``: R_j = every non-self point not yet placed (all candidates
      minus pi_1..pi_{j-1}), i.e. the first k factors of DarkRank's listwise likelihood
      over the whole batch, so ``k=N-1`` gives the full HardRank loss. Its normalisers
      hold more terms, so it is never smaller than ``"top_k"``, and on spread-out
      embeddings it is much larger: the paper's lambda was not tuned for it.

    ``k=None`` uses the whole list (both normalisers then agree).
    """

    def __init__(self, alpha: float = 3.0, beta: float = 3.0, k: int | None = 4, normalizer: str = "top_k"):
        super().__init__()
        if k is not None and k < 1:
            raise ValueError(f"DarkRankLoss: k must be >= 1 or None, got {k}")
        if normalizer not in DARKRANK_NORMALIZERS:
            raise ValueError(f"DarkRankLoss: unknown normalizer {normalizer!r}; "
                             f"valid: {', '.join(DARKRANK_NORMALIZERS)}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = k
        self.normalizer = normalizer

    def _scores(self, x: Tensor) -> Tensor:
        # -alpha * d^beta from squared distances clamped at 1e-12: finite gradients on duplicates.
        # d^beta = exp(beta/2 * log d^2), not pow(d^2, beta/2): pow's backward takes
        # pow(d^2, beta/2 - 1), which for beta = 3 is MKL's square root, whose last bits
        # depend on the processor (see rkd.portable); exp and log are pinned.
        norms = x.pow(2).sum(dim=1)
        squared = norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * x @ x.T
        return -self.alpha * torch.exp(0.5 * self.beta * torch.log(squared.clamp_min(1e-12)))

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """The negative Plackett-Luce log-likelihood, under the ``student`` [N, D_s]
        embeddings' scores, of the order of each anchor's top-k neighbours under the
        ``teacher``'s [N, D_t] (detached), averaged over the N anchors: a scalar.

        Raises:
            ValueError: inputs that are not 2-D with one N, or a batch of at most k rows.
        """
        if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"DarkRankLoss expects [N, D_s] and [N, D_t] embeddings, got {tuple(student.shape)} "
                f"and {tuple(teacher.shape)}"
            )
        n = student.shape[0]
        k = n - 1 if self.k is None else self.k
        if n < k + 1:
            raise ValueError(f"DarkRankLoss with k={k} needs at least {k + 1} examples in the batch, got N={n}; "
                             f"use a larger batch or a smaller k")
        self_mask = torch.eye(n, dtype=torch.bool, device=student.device)
        with torch.no_grad():
            teacher_scores = self._scores(teacher.detach()).masked_fill(self_mask, -math.inf)
            order = teacher_scores.topk(k, dim=1).indices  # [N, k], best first
        student_scores = self._scores(student).masked_fill(self_mask, -math.inf)
        ranked = student_scores.gather(1, order)  # [N, k]
        pool = ranked
        if self.normalizer == "all_remaining" and k < n - 1:
            # every step's normaliser also holds the candidates outside the top-k
            rest = student_scores.scatter(1, order, -math.inf)
            pool = torch.cat([ranked, torch.logsumexp(rest, dim=1, keepdim=True)], dim=1)
        # log-normaliser of step j = logsumexp over pool[j:] (suffix log-sum-exp)
        suffix = torch.logcumsumexp(pool.flip(1), dim=1).flip(1)[:, :k]
        log_likelihood = (ranked - suffix).sum(dim=1)
        return -log_likelihood.mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, k={self.k}, normalizer={self.normalizer!r}"
