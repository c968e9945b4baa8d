"""Metric-learning losses: triplet with distance-weighted sampling (eq. 12) and DarkRank."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["triplet_loss", "DistanceWeightedSampler", "TripletLoss", "DarkRankLoss"]


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.2) -> Tensor:
    """Eq. 12 averaged over the triplets: ``mean [||a - p||^2 - ||a - n||^2 + m]_+``.

    Squared Euclidean distances, as the paper writes it (the authors' code used
    ``F.triplet_margin_loss``, i.e. plain distances; the paper's equation wins).
    """
    if not (anchor.shape == positive.shape == negative.shape) or anchor.dim() != 2:
        raise ValueError(
            f"triplet_loss expects three [T, D] tensors of one shape, got {tuple(anchor.shape)}, "
            f"{tuple(positive.shape)}, {tuple(negative.shape)}"
        )
    positive_distance = (anchor - positive).pow(2).sum(dim=1)
    negative_distance = (anchor - negative).pow(2).sum(dim=1)
    return F.relu(positive_distance - negative_distance + margin).mean()


def _class_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    not_self = ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & not_self, ~same


class DistanceWeightedSampler(nn.Module):
    """Distance-weighted negative sampling (Wu et al., 2017).

    For every ordered positive pair (a, p) one negative n is drawn with probability
    proportional to ``1 / q(d_an)``, where ``q(d) ~ d^(D-2) (1 - d^2/4)^((D-3)/2)`` is the
    density of distances between uniform points on the unit sphere in R^D, so
    ``log w = (2 - D) log d - ((D - 3)/2) log(1 - d^2/4)`` (computed in log space and
    normalised per anchor with a max shift). Distances are clamped below at ``cutoff``;
    weights are zero for same-class points and for ``d >= nonzero_loss_cutoff`` (their
    triplets would have zero loss). An anchor with no weighted negative falls back to a
    uniform draw over its other-class points. Assumes L2-normalised embeddings.

    Draws use ``generator`` when given (deterministic for a seeded generator), else the
    global RNG. Returns index tensors (anchor, positive, negative), with no gradient.
    """

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.generator = generator

    def negative_weights(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """[N, N] sampling probabilities: row a is the distribution of a's negative."""
        n, dim = embeddings.shape
        _, negative = _class_masks(labels)
        x = embeddings.detach().to(torch.float64)
        distance = torch.cdist(x, x).clamp_min(self.cutoff)
        # q(d) vanishes at d = 2; keep the log finite (such points are beyond the loss cut-off anyway)
        log_weight = (2.0 - dim) * distance.log() - ((dim - 3.0) / 2.0) * (
            1.0 - 0.25 * distance.pow(2)).clamp_min(1e-12).log()
        allowed = negative & (distance < self.nonzero_loss_cutoff)
        log_weight = log_weight.masked_fill(~allowed, -math.inf)
        row_max = log_weight.max(dim=1, keepdim=True).values
        weight = torch.exp(log_weight - torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max)))
        no_candidate = weight.sum(dim=1, keepdim=True) == 0
        weight = torch.where(no_candidate, negative.to(weight.dtype), weight)
        return weight / weight.sum(dim=1, keepdim=True).clamp_min(1e-300)

    @torch.no_grad()
    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
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


class TripletLoss(nn.Module):
    """Triplet loss, eq. 12 (margin 0.2, squared L2), over sampled triplets.

    ``forward(embeddings, labels)`` draws one negative per ordered positive pair with
    ``sampler`` (default: :class:`DistanceWeightedSampler` with cut-offs 0.5 and 1.4, the
    authors' values) and returns the mean of eq. 12 over those triplets. Expects the
    model's L2-normalised embeddings and does not normalise them itself, so that an
    unnormalised student trains the way Table 1's "without l2 norm" rows did.
    """

    def __init__(self, margin: float = 0.2, sampler: nn.Module | None = None):
        super().__init__()
        self.margin = float(margin)
        self.sampler = sampler if sampler is not None else DistanceWeightedSampler(0.5, 1.4)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        anchor, positive, negative = self.sampler(embeddings, labels)
        return triplet_loss(embeddings[anchor], embeddings[positive], embeddings[negative], self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class DarkRankLoss(nn.Module):
    """DarkRank, HardRank form (Chen, Wang & Zhang, AAAI 2018).

    For each anchor q, the teacher ranks the other points by its score
    ``S_t(q, x) = -alpha * ||t_q - t_x||^beta``; let pi be its top-k (self excluded, in
    order). Under the student's scores ``s_x = -alpha * ||s_q - s_x||^beta`` the
    Plackett-Luce log-likelihood of that order is

        log P(pi | s) = sum_{j=1..k} [ s_{pi_j} - log sum_{x in R_j} exp(s_x) ],

    and the loss is its negative, averaged over anchors. Choice made here: R_j is every
    non-self point not yet placed (all candidates minus pi_1..pi_{j-1}), i.e. the first k
    factors of DarkRank's listwise likelihood over the whole batch, so k = N - 1
    reproduces the full HardRank loss. (The RKD authors' code normalises over the k
    selected points only, which ignores how the top-k compare with the rest; pass
    ``normalize_over_top_k_only=True`` for that form.) ``k=None`` uses the whole list.
    """

    def __init__(self, alpha: float = 3.0, beta: float = 3.0, k: int | None = 4,
                 normalize_over_top_k_only: bool = False):
        super().__init__()
        if k is not None and k < 1:
            raise ValueError(f"DarkRankLoss: k must be >= 1 or None, got {k}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = k
        self.normalize_over_top_k_only = bool(normalize_over_top_k_only)

    def _scores(self, x: Tensor) -> Tensor:
        # -alpha * d^beta from squared distances clamped at 1e-12: finite gradients on duplicates
        norms = x.pow(2).sum(dim=1)
        squared = norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * x @ x.T
        return -self.alpha * squared.clamp_min(1e-12).pow(self.beta / 2.0)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
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
        if not self.normalize_over_top_k_only and k < n - 1:
            # every step's normaliser also holds the candidates outside the top-k
            rest = student_scores.scatter(1, order, -math.inf)
            pool = torch.cat([ranked, torch.logsumexp(rest, dim=1, keepdim=True)], dim=1)
        # log-normaliser of step j = logsumexp over pool[j:] (suffix log-sum-exp)
        suffix = torch.logcumsumexp(pool.flip(1), dim=1).flip(1)[:, :k]
        log_likelihood = (ranked - suffix).sum(dim=1)
        return -log_likelihood.mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, k={self.k}"
