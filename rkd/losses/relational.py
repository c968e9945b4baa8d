"""Relational losses: RKD distance (eq. 5-8), RKD angle (eq. 9-10) and RRD.

Numerics follow the authors' code where the paper is silent (see
``shared/paper/protocol.md``): smooth-L1 with beta 1, averaged over all N^2 (distance)
or N^3 (angle) entries including the zeros of degenerate tuples; squared distances
clamped at 1e-12 before the square root; distances divided by the mean of the strictly
positive pairwise distances; the unit vector of a zero difference is the zero vector.

Neither RKD loss builds an N x N x D tensor. Everything that touches the feature
dimension D is one N x N Gram matrix (O(N^2 D) time, O(N^2) memory), refined by direct
differences for the few pairs the Gram matrix cannot resolve; the angle loss then works
on the N x N squared-distance matrix alone, via the law of cosines, chunked over the
vertex so that memory stays O(chunk * N^2), with a hand-written backward. The law of
cosines subtracts squared distances, which cancels badly for tight clusters; each
squared distance is therefore carried as a (hi, lo) pair whose hi parts add exactly
(:func:`_split_squared_distances`), which keeps float32 cosines as accurate as the
authors' float32 unit vectors.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..portable import sqrt as portable_sqrt

__all__ = [
    "pairwise_squared_distances",
    "rkd_distance",
    "rkd_angle",
    "RKDLoss",
    "RRDLoss",
]

# Squared distances are clamped here before the square root (the authors' pdist).
SQUARED_DISTANCE_CLAMP = 1e-12
# Two rows count as coincident (distance 0, no gradient through their difference) when
# their squared distance is below this fraction of their squared (centred) norms, i.e.
# when they are closer than 1e-6 of their norms. This keeps gradients bounded on
# near-duplicate rows; float32 resolves about 1e-7, so rows 1e-7 to 1e-6 apart count as
# duplicates too. (Below DIRECT_RELATIVE_THRESHOLD the distances are exact, so the test
# is not confused by the Gram matrix's rounding.)
COINCIDENT_RELATIVE_TOLERANCE = 1e-12
# Pairs whose Gram-matrix squared distance is below this fraction of their squared
# (centred) norms are recomputed from their difference vector: there the float64 Gram
# matrix's rounding (~1e-16 x the norms) would be more than ~1e-10 of the distance.
# Well-spread embeddings have no such pair, so this costs nothing in training; tight
# clusters (intra/inter distance ratio below ~1e-3) have a few.
DIRECT_RELATIVE_THRESHOLD = 1e-6
# Elements per [pairs, D] block when recomputing those pairs.
DIRECT_CHUNK_ELEMENTS = 1 << 20
# Elements per [chunk, N, N] block in the angle loss: 4 MiB of float32 on the CPU (a few
# such blocks are alive at once), larger on GPUs, where each chunk costs kernel launches.
ANGLE_CHUNK_ELEMENTS = 1 << 20
ANGLE_CHUNK_ELEMENTS_CUDA = 1 << 25


def _check_relational_inputs(student: Tensor, teacher: Tensor, minimum: int, loss_name: str) -> None:
    for role, x in (("student", student), ("teacher", teacher)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{loss_name}: {role} must be a Tensor, got {type(x).__name__}")
        if x.dim() != 2:
            raise ValueError(
                f"{loss_name}: {role} must be a 2-D [N, D] batch of embeddings, got shape "
                f"{tuple(x.shape)}; flatten feature maps first (e.g. x.flatten(1))"
            )
        if not x.is_floating_point():
            raise TypeError(f"{loss_name}: {role} must be a floating-point tensor, got {x.dtype}")
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"{loss_name}: student and teacher must hold the same N examples, got "
            f"N={student.shape[0]} (student) and N={teacher.shape[0]} (teacher)"
        )
    if student.shape[0] < minimum:
        raise ValueError(
            f"{loss_name} needs at least {minimum} examples in the batch, got N={student.shape[0]}; "
            f"use a larger batch (batch_size of the batch sampler, or drop_last=True for the last one)"
        )


class _DirectSquaredDistances(torch.autograd.Function):
    """``sum_d (x[r_p, d] - x[c_p, d])^2`` for a list of pairs p = (r_p, c_p), in chunks of
    pairs, with an analytic backward (``2 g_p (x_r - x_c)`` into row r, its negative into
    row c), so that no [pairs, D] tensor is kept for autograd."""

    @staticmethod
    def forward(ctx, x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        ctx.save_for_backward(x, rows, cols)
        out = x.new_empty(rows.shape[0])
        step = max(1, DIRECT_CHUNK_ELEMENTS // max(1, x.shape[1]))
        for start in range(0, rows.shape[0], step):
            stop = start + step
            out[start:stop] = (x[rows[start:stop]] - x[cols[start:stop]]).pow_(2).sum(dim=1)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        x, rows, cols = ctx.saved_tensors
        grad = torch.zeros_like(x)
        step = max(1, DIRECT_CHUNK_ELEMENTS // max(1, x.shape[1]))
        for start in range(0, rows.shape[0], step):
            stop = start + step
            r, c = rows[start:stop], cols[start:stop]
            weighted = (x[r] - x[c]).mul_(2.0 * grad_output[start:stop].unsqueeze(1))
            grad.index_add_(0, r, weighted)
            grad.index_add_(0, c, weighted.neg_())
        return grad, None, None


def pairwise_squared_distances(x: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of ``x`` ([N, D] -> [N, N], float64).

    Computed from the Gram matrix of the centred rows in float64 (distances do not
    change under translation; centring and float64 keep the cancellation in
    ``|x_i|^2 + |x_j|^2 - 2 <x_i, x_j>`` far below float32 resolution). The pairs closer
    than ``sqrt(1e-6)`` of their centred norms (:data:`DIRECT_RELATIVE_THRESHOLD`), for
    which that cancellation would still cost more than ~1e-10 of the distance, are
    recomputed from their difference vectors (exact for float32 inputs), so that tight
    clusters keep full relative precision; well-spread embeddings have no such pair.
    The diagonal and the entries of coincident rows (squared distance <= 1e-12 x the
    sum of their squared centred norms) are set to exactly zero, so no rounding residue
    leaks into means or gradients. Differentiable (autograd, O(N^2 + N D) memory);
    zeroed entries pass no gradient.
    """
    centred = x.to(torch.float64, copy=True)
    centred -= centred.mean(dim=0, keepdim=True)  # in place: one N x D copy, not two
    gram = centred @ centred.T
    squared_norms = gram.diagonal()
    norm_sums = squared_norms.unsqueeze(1) + squared_norms.unsqueeze(0)
    squared = norm_sums - 2.0 * gram
    with torch.no_grad():
        rows, cols = (squared <= DIRECT_RELATIVE_THRESHOLD * norm_sums).triu_(diagonal=1).nonzero(as_tuple=True)
    if rows.numel():
        direct = _DirectSquaredDistances.apply(centred, rows, cols)
        squared = squared.index_put((rows, cols), direct).index_put((cols, rows), direct)
    coincident = squared <= COINCIDENT_RELATIVE_TOLERANCE * norm_sums
    coincident.fill_diagonal_(True)
    return squared.masked_fill(coincident, 0.0)


def _normalized_distances(x: Tensor) -> Tensor:
    """psi_D of eq. 5 for every pair: distances over their batch mean mu (eq. 6)."""
    n = x.shape[0]
    squared = pairwise_squared_distances(x)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=x.device)
    distances = portable_sqrt(squared.clamp_min(SQUARED_DISTANCE_CLAMP)) * off_diagonal
    # After the clamp every off-diagonal distance is >= 1e-6 > 0, so this is the mean of
    # the strictly positive entries, as in the authors' code.
    mean_distance = distances.sum() / (n * (n - 1))
    return distances / mean_distance


def rkd_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """Distance-wise RKD loss, eq. 7 with the potential of eq. 5-6 and Huber loss eq. 8.

    ``L = mean_{i,j} smooth_l1(psi_D(s_i, s_j), psi_D(t_i, t_j))`` over all N^2 pairs,
    diagonal zeros included, where ``psi_D(x_i, x_j) = ||x_i - x_j|| / mu`` and ``mu`` is
    the mean distance over the pairs i != j. Squared distances are clamped at 1e-12
    before the square root (a duplicate pair has distance 1e-6 and passes no gradient).

    Args:
        student: [N, D_s] student embeddings (gradients flow into it).
        teacher: [N, D_t] teacher embeddings; D_t may differ from D_s. Detached here.

    Returns:
        A scalar in the student's dtype.

    Raises:
        ValueError: N < 2, different N, or non-2-D inputs.
    """
    _check_relational_inputs(student, teacher, minimum=2, loss_name="rkd_distance")
    with torch.no_grad():
        teacher_potential = _normalized_distances(teacher.detach())
    student_potential = _normalized_distances(student)
    loss = F.smooth_l1_loss(student_potential, teacher_potential, beta=1.0)
    return loss.to(student.dtype)


class _SplitSquared(NamedTuple):
    """A float64 squared-distance matrix carried in a working dtype: ``hi + lo`` equals
    it to within the rounding of ``lo``; ``value`` is it rounded to the working dtype."""

    hi: Tensor
    lo: Tensor
    value: Tensor


def _split_squared_distances(squared: Tensor, dtype: torch.dtype) -> _SplitSquared:
    """Split a float64 squared-distance matrix into ``hi + lo`` in ``dtype``.

    ``hi`` is ``squared`` rounded to a multiple of one power of two q chosen so that
    ``max(squared) <= 2^(p-2) q`` (p: the dtype's significand bits): every hi is an
    integer times q below 2^(p-2), so ``hi_ij + hi_kj - hi_ik`` is exact in ``dtype``.
    ``lo = squared - hi`` (|lo| <= q/2) keeps the rest. Summed as (exact hi part) + (lo
    part), the law of cosines' numerator ``d_ij^2 + d_kj^2 - d_ik^2`` is off by a few
    ulps of q, about 2^(2-2p) of the largest squared distance, where summing the rounded
    squared distances directly is off by a few ulps of the largest one, 2^-p of it: in
    float32, for points 1e-5 apart among points ~1 apart, ~1e-14 instead of ~1e-7 on a
    numerator of ~1e-5.
    """
    significand_bits = 1 - round(math.log2(torch.finfo(dtype).eps))  # 24 for float32, 53 for float64
    _, exponent = torch.frexp(squared.max().clamp_min(torch.finfo(torch.float64).tiny))
    quantum = torch.ldexp(squared.new_ones(()), exponent - (significand_bits - 2))
    hi = torch.round(squared / quantum).mul_(quantum)
    return _SplitSquared(hi.to(dtype), (squared - hi).to(dtype), squared.to(dtype))


def _vertex_cosines(squared: _SplitSquared, start: int, stop: int) -> tuple[Tensor, Tensor]:
    """Cosines at the vertices j in [start, stop) of every (i, j, k), from squared distances.

    ``cos(i, j, k) = (d_ij^2 + d_kj^2 - d_ik^2) / (2 d_ij d_kj)`` (law of cosines, the same
    number as <e_ij, e_kj>); 0 when d_ij or d_kj is zero (unit vector of a zero vector
    is the zero vector, as in the authors' F.normalize). The numerator is summed from
    the split matrices: the hi parts first (exact), then the lo parts. Returns the
    [c, N, N] cosines and the [c, N] inverse distances to the vertex ``1 / d_ij`` (0
    where the distance is zero). Only the cosines are a [c, N, N] block: the factor
    ``1 / (2 d_ij d_kj)`` is applied as two broadcast products, never stored.
    """
    to_vertex = squared.value[:, start:stop].T.contiguous()  # [c, N]: to_vertex[j, i] = d_ij^2
    hi = squared.hi[:, start:stop].T.contiguous()
    lo = squared.lo[:, start:stop].T.contiguous()
    inverse_length = torch.where(to_vertex > 0, to_vertex.rsqrt(), torch.zeros_like(to_vertex))
    cosines = hi.unsqueeze(2) + hi.unsqueeze(1)
    cosines.sub_(squared.hi)  # exact: hi_ij + hi_kj - hi_ik
    cosines.add_(lo.unsqueeze(2)).add_(lo.unsqueeze(1)).sub_(squared.lo)
    _scale_by_half_inverse_product(cosines, inverse_length)
    return cosines, inverse_length


def _scale_by_half_inverse_product(block: Tensor, inverse_length: Tensor) -> Tensor:
    """``block[j, i, k] *= 1 / (2 d_ij d_kj)``, in place."""
    return block.mul_(inverse_length.unsqueeze(2)).mul_((0.5 * inverse_length).unsqueeze(1))


def _vertex_chunks(n: int, device: torch.device):
    budget = ANGLE_CHUNK_ELEMENTS_CUDA if device.type == "cuda" else ANGLE_CHUNK_ELEMENTS
    step = max(1, min(n, budget // (n * n)))
    for start in range(0, n, step):
        yield start, min(n, start + step)


class _AngleLossFromSquaredDistances(torch.autograd.Function):
    """Eq. 10 (smooth-L1 mean over all N^3 triples) from two N x N float64 squared-distance
    matrices, computed in ``work_dtype`` (default: theirs) from their (hi, lo) splits.

    The backward recomputes the cosines chunk by chunk instead of saving N^3 values.
    With c the student cosine at vertex j, a_i = d_ij^2, b_ik = d_ik^2 and
    g = smooth_l1'(c_s - c_t) / N^3:
        dc/db_ik = -1 / (2 d_ij d_kj),   dc/da_i = 1 / (2 d_ij d_kj) - c / (2 a_i),
    and since c and g are symmetric in (i, k),
        dL/da_i = sum_k [g / (d_ij d_kj) - g c / a_i],   dL/db_ik = -sum_j g / (2 d_ij d_kj).
    Entries with a zero distance carry cosine 0 and receive no gradient. The sums run
    as matrix products (BLAS) rather than tensor reductions, which are slow on CPU.
    """

    @staticmethod
    def forward(ctx, student_squared: Tensor, teacher_squared: Tensor,
                work_dtype: torch.dtype | None = None) -> Tensor:
        work_dtype = student_squared.dtype if work_dtype is None else work_dtype
        n = student_squared.shape[0]
        student_split = _split_squared_distances(student_squared, work_dtype)
        teacher_split = _split_squared_distances(teacher_squared, work_dtype)
        total = student_split.value.new_zeros(())
        for start, stop in _vertex_chunks(n, student_squared.device):
            student_cos = _vertex_cosines(student_split, start, stop)[0]
            teacher_cos = _vertex_cosines(teacher_split, start, stop)[0]
            total += F.smooth_l1_loss(student_cos, teacher_cos, reduction="sum", beta=1.0)
        ctx.save_for_backward(*student_split, *teacher_split)
        ctx.input_dtype = student_squared.dtype
        return total / n**3

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        student_split = _SplitSquared(*ctx.saved_tensors[:3])
        teacher_split = _SplitSquared(*ctx.saved_tensors[3:])
        n = student_split.value.shape[0]
        grad = torch.zeros_like(student_split.value)
        for start, stop in _vertex_chunks(n, grad.device):
            c = stop - start
            student_cos, inverse_length = _vertex_cosines(student_split, start, stop)
            teacher_cos = _vertex_cosines(teacher_split, start, stop)[0]
            # smooth-L1 derivative (beta 1), written over the teacher block to save memory
            g = torch.sub(student_cos, teacher_cos, out=teacher_cos).clamp_(-1.0, 1.0)
            # sum_k g_ik c_ik, as a batch of dot products
            g_dot_cos = torch.bmm(g.view(c * n, 1, n), student_cos.view(c * n, n, 1)).view(c, n)
            # sum_k g_ik / (d_ij d_kj) = (1 / d_ij) * (g @ (1 / d_.j))_i
            g_over_lengths = torch.bmm(g, inverse_length.unsqueeze(2)).squeeze(2) * inverse_length
            grad_to_vertex = g_over_lengths - g_dot_cos * inverse_length.pow(2)  # [c, N]
            grad[:, start:stop] += grad_to_vertex.T
            # sum over the vertices of g_ik / (2 d_ij d_kj)
            weighted = _scale_by_half_inverse_product(g, inverse_length).view(c, n * n)
            grad -= (weighted.new_ones(1, c) @ weighted).view(n, n)
        return (grad * (grad_output / n**3)).to(ctx.input_dtype), None, None


def rkd_angle(student: Tensor, teacher: Tensor) -> Tensor:
    """Angle-wise RKD loss, eq. 10 with the potential of eq. 9 and Huber loss eq. 8.

    ``L = mean_{i,j,k} smooth_l1(cos<s_i s_j s_k>, cos<t_i t_j t_k>)`` over all N^3
    triples, the angle taken at the vertex j: ``cos = <e_ij, e_kj>`` with
    ``e_ij = (x_i - x_j) / ||x_i - x_j||``. A zero difference (i == j, or duplicate rows,
    or rows closer than 1e-6 of their centred norms) has the zero vector as its unit
    vector: its triples contribute cosine 0 and pass no gradient, so gradients stay
    bounded on duplicate rows (the authors' form sends ~1e8 through F.normalize of a
    near-zero difference).

    Exact, with no N x N x D tensor and no O(N^3 D) product: the cosine is computed from
    pairwise distances by the law of cosines,
    ``cos = (d_ij^2 + d_kj^2 - d_ik^2) / (2 d_ij d_kj)``
    (equal to ``(G_ik - G_ij - G_jk + G_jj) / (d_ij d_kj)`` for the Gram matrix G), chunked
    over the vertex j (memory O(chunk * N^2)), with an analytic backward; the only
    D-dependent work is one Gram matrix per input (float64, see
    :func:`pairwise_squared_distances`).

    Args:
        student: [N, D_s] student embeddings.
        teacher: [N, D_t] teacher embeddings; detached here.

    Returns:
        A scalar in the student's dtype.

    Raises:
        ValueError: N < 3, different N, or non-2-D inputs.
    """
    _check_relational_inputs(student, teacher, minimum=3, loss_name="rkd_angle")
    work_dtype = torch.promote_types(torch.promote_types(student.dtype, teacher.dtype), torch.float32)
    with torch.no_grad():
        teacher_squared = pairwise_squared_distances(teacher.detach())
    student_squared = pairwise_squared_distances(student)
    loss = _AngleLossFromSquaredDistances.apply(student_squared, teacher_squared, work_dtype)
    return loss.to(student.dtype)


class RKDLoss(nn.Module):
    """RKD-DA: ``lambda_d * rkd_distance + lambda_a * rkd_angle`` (eq. 11's KD part).

    The defaults (1, 2) are the metric-learning weights of section 4.1.
    """

    def __init__(self, lambda_d: float = 1.0, lambda_a: float = 2.0):
        super().__init__()
        self.lambda_d = float(lambda_d)
        self.lambda_a = float(lambda_a)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        loss = student.new_zeros(())
        if self.lambda_d:
            loss = loss + self.lambda_d * rkd_distance(student, teacher)
        if self.lambda_a:
            loss = loss + self.lambda_a * rkd_angle(student, teacher)
        return loss

    def extra_repr(self) -> str:
        return f"lambda_d={self.lambda_d}, lambda_a={self.lambda_a}"


class RRDLoss(nn.Module):
    """Relational Representation Distillation (Giakoumoglou & Stathaki, 2024).

    Student and teacher embeddings are projected to ``feat_dim`` by ``embed_s`` /
    ``embed_t`` (Linear) and L2-normalised. Against a FIFO queue of past (projected,
    normalised) teacher embeddings Q, the teacher distribution is
    ``p_t = softmax(z_t Q^T / tau_t)`` and the student's ``p_s = softmax(z_s Q^T / tau_s)``.
    The loss is the cross-entropy ``-sum_q p_t log p_s`` with p_t detached, averaged over
    the batch. In training mode the batch's teacher embeddings then replace the oldest
    queue rows (wrapping around; any batch size, a batch larger than the queue keeps its
    last ``queue_size`` rows); in eval mode the queue is left alone.

    Version followed: the RRD code of 2024, ``distillers/RRD.py`` of
    ``giakoumoglou/distillers`` (the repository ``giakoumoglou/rrd`` points to), whose
    ``train_student.py`` defaults are ``nce_t_s = 0.04``, ``nce_t_t = 0.10`` and whose
    loss enqueues the batch *after* computing the similarities. These are the defaults
    here (tau_s < tau_t: the student's distribution is the sharper one).

    The later code (``cifar/distillers/RRD.py``, ``RRD_FifoMemory_Loss``, with
    ``cifar/train_student.py`` defaults ``nce_t_s = 0.1``, ``nce_t_t = 0.02``) enqueues the
    batch *before* computing the similarities, so each example's own teacher key is among
    its anchors, and makes the teacher's distribution the sharper one. Get it with
    ``enqueue_before_loss=True, tau_s=0.1, tau_t=0.02``.

    One difference from every version of their code: they normalise the random initial
    queue along dim 0 (each of its ``feat_dim`` columns has unit norm, so its rows are
    nearly zero); here each initial row is a unit vector, like the keys that replace
    them. Only the first ``queue_size / batch`` steps see initial rows.

    Buffers: ``queue`` [queue_size, feat_dim] (random unit rows at init, drawn from the
    global torch RNG) and ``queue_ptr`` (long scalar, next row to overwrite); both are in
    the state_dict.
    """

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        feat_dim: int = 128,
        queue_size: int = 16384,
        tau_s: float = 0.04,
        tau_t: float = 0.10,
        enqueue_before_loss: bool = False,
    ):
        super().__init__()
        for name, value in (("student_dim", student_dim), ("teacher_dim", teacher_dim),
                            ("feat_dim", feat_dim), ("queue_size", queue_size)):
            if int(value) < 1:
                raise ValueError(f"RRDLoss: {name} must be a positive integer, got {value}")
        if tau_s <= 0 or tau_t <= 0:
            raise ValueError(f"RRDLoss: temperatures must be positive, got tau_s={tau_s}, tau_t={tau_t}")
        self.tau_s = float(tau_s)
        self.tau_t = float(tau_t)
        self.enqueue_before_loss = bool(enqueue_before_loss)
        self.embed_s = nn.Linear(student_dim, feat_dim)
        self.embed_t = nn.Linear(teacher_dim, feat_dim)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, feat_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def queue_size(self) -> int:
        return self.queue.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` [B, feat_dim] over the oldest queue rows, wrapping around."""
        size = self.queue_size
        start = int(self.queue_ptr)
        batch = keys.shape[0]
        # Key b goes to row (start + b) % size; when the batch is longer than the queue
        # only its last `size` keys survive, so only those are written.
        first_kept = max(0, batch - size)
        rows = (torch.arange(first_kept, batch, device=self.queue.device) + start) % size
        self.queue[rows] = keys[first_kept:].to(self.queue.dtype)
        self.queue_ptr.fill_((start + batch) % size)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        if student.dim() != 2 or teacher.dim() != 2:
            raise ValueError(
                f"RRDLoss expects [N, D] embeddings, got student {tuple(student.shape)} and "
                f"teacher {tuple(teacher.shape)}"
            )
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"RRDLoss: student and teacher batch sizes differ ({student.shape[0]} vs {teacher.shape[0]})"
            )
        student_keys = F.normalize(self.embed_s(student), dim=1)
        with torch.no_grad():
            teacher_keys = F.normalize(self.embed_t(teacher.detach()), dim=1)
            if self.training and self.enqueue_before_loss:
                self.enqueue(teacher_keys)
            anchors = self.queue.clone()  # a later enqueue must not alter what was used
            teacher_probs = F.softmax(teacher_keys @ anchors.T / self.tau_t, dim=1)
        student_log_probs = F.log_softmax(student_keys @ anchors.T / self.tau_s, dim=1)
        loss = -(teacher_probs * student_log_probs).sum(dim=1).mean()
        if self.training and not self.enqueue_before_loss:
            self.enqueue(teacher_keys)
        return loss

    def extra_repr(self) -> str:
        return (f"queue_size={self.queue_size}, tau_s={self.tau_s}, tau_t={self.tau_t}, "
                f"enqueue_before_loss={self.enqueue_before_loss}")
