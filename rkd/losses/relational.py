"""Relational losses: RKD distance (eq. 5-8) and RKD angle (eq. 9-10); RRD is in
:mod:`rkd.losses.rrd`.

Numerics follow the authors' code where the paper is silent (see
``shared/paper/protocol.md``): smooth-L1 with beta 1, averaged over all N^2 (distance)
or N^3 (angle) entries including the zeros of degenerate tuples; squared distances
clamped at 1e-12 before the square root; distances divided by the mean of the strictly
positive pairwise distances; the unit vector of a zero difference is the zero vector.

Neither RKD loss builds an N x N x D tensor. Everything that touches the feature
dimension D is one Gram matrix per input and one matrix product in the backward pass
(:mod:`rkd.losses.pairwise`: centred rows, close pairs recomputed from their difference
vectors, exact zeros for duplicate rows). RKD-D computes in float32 (float64 for float64
inputs), with the error bound and float64 fallback of that module. RKD-A takes float64
squared distances and works on the N x N matrices alone, via the law of cosines, chunked
over the vertex so that memory stays O(chunk * N^2). The law of cosines subtracts
squared distances, which cancels badly for tight clusters; each squared distance is
therefore carried as a (hi, lo) pair whose hi parts add exactly
(:func:`_split_squared_distances`), which keeps float32 cosines as accurate as the
authors' float32 unit vectors. Both losses compute their gradient with respect to the
squared distances during the forward pass (for RKD-A: one sweep over the N^3 triples
instead of two), and their backward only scales it.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .pairwise import GramDistances, gram_backward, gram_dtype, gram_squared_distances, squared_distances

__all__ = [
    "pairwise_squared_distances",
    "rkd_distance",
    "rkd_angle",
    "RKDLoss",
]

# Squared distances are clamped here before the square root (the authors' pdist).
SQUARED_DISTANCE_CLAMP = 1e-12
# Vertices per chunk of the angle loss: the chunk's [c, N, N] blocks (three are alive) hold
# at most this many elements. 1 MiB of float32 on the CPU, which keeps the blocks in cache
# and the peak memory low; larger on GPUs, where each chunk costs kernel launches.
ANGLE_CHUNK_ELEMENTS = 1 << 18
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


def pairwise_squared_distances(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Squared Euclidean distances between the rows of ``x`` ([N, D] -> [N, N]).

    From the Gram matrix of the centred rows, one matrix product, in ``dtype``: by
    default float32 (float64 for float64 inputs, or where float32 matrix products run
    in TF32/bfloat16). The pairs that the Gram matrix's error bound cannot resolve,
    closer than a quarter (float32; float64: 1e-3) of their centred norms, are
    recomputed from their difference vectors, and a float32 request returns float64
    when more than a quarter of the pairs are that close; the bound and its figures
    are in :mod:`rkd.losses.pairwise`. The diagonal and the entries of coincident rows
    (squared distance <= 1e-12 x the sum of their squared centred norms) are exactly
    zero and pass no gradient. Differentiable, with a hand-written backward (one
    matrix product, O(N^2 + N D) memory).
    """
    return squared_distances(x, dtype)


def _smooth_l1_sum(difference: Tensor, slope: Tensor) -> Tensor:
    """Eq. 8 (Huber, delta 1) summed over ``difference``, given its slope
    ``g = clamp(difference, -1, 1)``: ``x^2 / 2 = g (x - g / 2)`` where ``|x| <= 1`` and
    ``|x| - 1/2 = g (x - g / 2)`` elsewhere. ``difference`` is overwritten. (ATen's sum
    adds in a cascade, which keeps float32 sums of millions of terms at the accuracy
    of F.smooth_l1_loss; BLAS dot products lost a decimal digit here.)"""
    return difference.sub_(slope, alpha=0.5).mul_(slope).sum()


def _distances_and_slopes(squared: Tensor, slopes: bool = False) -> tuple[Tensor, Tensor | None]:
    """The authors' pdist from squared distances: ``sqrt(max(sq, 1e-12))`` off the
    diagonal, 0 on it. With ``slopes``, also ``d d / d sq = 1 / (2 d)``, 0 wherever the
    clamp or the diagonal holds the distance constant."""
    clamped = squared.clamp_min(SQUARED_DISTANCE_CLAMP)
    inverse = clamped.rsqrt()
    # sqrt as x * rsqrt(x): ATen's exact division and square root, the same bits on every
    # CPU (torch.sqrt goes through MKL, see rkd.portable)
    distances = clamped * inverse
    distances.fill_diagonal_(0.0)
    if not slopes:
        return distances, None
    return distances, inverse.mul_(0.5).masked_fill_(squared < SQUARED_DISTANCE_CLAMP, 0.0)


def _normalized_distances(x: Tensor) -> Tensor:
    """psi_D of eq. 5 for every pair: distances over their batch mean mu (eq. 6)."""
    n = x.shape[0]
    distances, _ = _distances_and_slopes(pairwise_squared_distances(x))
    # After the clamp every off-diagonal distance is >= 1e-6 > 0, so this is the mean of
    # the strictly positive entries, as in the authors' code.
    mean_distance = distances.sum() / (n * (n - 1))
    return distances / mean_distance


class _DistanceLoss(torch.autograd.Function):
    """Eq. 7 from the student's rows and the teacher's potentials psi_t.

    With psi = d / mu (mu the mean of the M = N (N - 1) off-diagonal distances) and
    g = clamp(psi_s - psi_t, -1, 1) the slope of eq. 8, L = (1 / N^2) sum h(psi_s - psi_t) and

        dL/dd_ij = (g_ij - sum_kl g_kl psi_kl / M) / (N^2 mu)    (i != j),

    times dd/dsq = 1 / (2 d) for the squared distances. The forward pass computes that
    when ``needs_grad``; the backward scales it by the incoming gradient and takes it
    through the Gram matrix (:func:`rkd.losses.pairwise.gram_backward`).
    """

    @staticmethod
    def forward(ctx, student: Tensor, teacher_potentials: Tensor, needs_grad: bool = True) -> Tensor:
        n = student.shape[0]
        pairs = n * (n - 1)
        gram = gram_squared_distances(student, gram_dtype(student))
        dtype = torch.promote_types(gram.squared.dtype, teacher_potentials.dtype)
        distances, slopes = _distances_and_slopes(gram.squared.to(dtype), slopes=needs_grad)
        inverse_mean = pairs / float(distances.sum())  # 1 / mu, a number: the scalar steps cost nothing
        difference = distances * inverse_mean
        difference -= teacher_potentials.to(dtype)
        slope = difference.clamp(-1.0, 1.0)
        loss = _smooth_l1_sum(difference, slope).div_(n**2)
        if needs_grad:
            mean_term = float(torch.dot(slope.view(-1), distances.view(-1))) * inverse_mean / pairs  # <g, psi_s> / M
            ctx.save_for_backward(slope.sub_(mean_term).mul_(slopes), *gram)
            ctx.scale, ctx.input_dtype = inverse_mean / n**2, student.dtype
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        weights, *gram = ctx.saved_tensors
        grad = gram_backward(weights * (grad_output * ctx.scale), GramDistances(*gram))
        return grad.to(ctx.input_dtype), None, None


def rkd_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """Distance-wise RKD loss, eq. 7 with the potential of eq. 5-6 and Huber loss eq. 8.

    ``L = mean_{i,j} smooth_l1(psi_D(s_i, s_j), psi_D(t_i, t_j))`` over all N^2 pairs,
    diagonal zeros included, where ``psi_D(x_i, x_j) = ||x_i - x_j|| / mu`` and ``mu`` is
    the mean distance over the pairs i != j. Squared distances are clamped at 1e-12
    before the square root (a duplicate pair has distance 1e-6 and passes no gradient).

    Computed in float32 for float32 inputs (float64 for float64 ones) from one Gram
    matrix per input (:func:`pairwise_squared_distances`, which bounds the float32 error
    and falls back to float64 where float32 would lose digits); the gradient is formed
    in the forward pass (:class:`_DistanceLoss`) and costs one matrix product.

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
        teacher_potentials = _normalized_distances(teacher.detach())
    needs_grad = torch.is_grad_enabled() and student.requires_grad
    loss = _DistanceLoss.apply(student, teacher_potentials, needs_grad)
    return loss.to(student.dtype)


class _SplitSquared(NamedTuple):
    """Float64 squared-distance matrices ([M, N, N], a stack) carried in a working dtype:
    ``hi + lo`` equals each to within the rounding of ``lo``; ``inverse`` is ``1 / d`` (0
    where d = 0)."""

    hi: Tensor
    lo: Tensor
    inverse: Tensor


def _split_squared_distances(squared: Tensor, dtype: torch.dtype) -> _SplitSquared:
    """Split float64 squared-distance matrices ([M, N, N]) into ``hi + lo`` in ``dtype``.

    ``hi`` is a matrix rounded to a multiple of one power of two q (its own for each
    matrix) chosen so that ``max(squared) <= 2^(p-2) q`` (p: the dtype's significand
    bits): every hi is an integer times q below 2^(p-2), so ``hi_ij + hi_kj - hi_ik`` is
    exact in ``dtype``. ``lo = squared - hi`` (|lo| <= q/2) keeps the rest. Summed as
    (exact hi part) + (lo parts), the law of cosines' numerator ``d_ij^2 + d_kj^2 - d_ik^2``
    is off by a few ulps of itself and of q, q about 2^(2-p) of the largest squared
    distance, where summing the rounded squared distances directly is off by a few ulps
    of the largest one, 2^-p of it: in float32, for points 1e-5 apart among points ~1
    apart, ~1e-12 instead of ~1e-7 on a numerator of ~1e-5.
    """
    significand_bits = 1 - round(math.log2(torch.finfo(dtype).eps))  # 24 for float32, 53 for float64
    quanta = [math.ldexp(1.0, (math.frexp(largest)[1] if largest > 0 else 0) - (significand_bits - 2))
              for largest in squared.amax(dim=(-2, -1)).tolist()]  # each largest < 2^exponent
    quantum = squared.new_tensor(quanta).view(-1, 1, 1)
    hi = (squared / quantum).round_().mul_(quantum)  # multiples of a power of two: exact
    inverse = squared.to(dtype, copy=True).rsqrt_().nan_to_num_(posinf=0.0)  # squared distances >= 0; 1 / 0 -> 0
    return _SplitSquared(hi.to(dtype), (squared - hi).to(dtype), inverse)


def _vertex_cosines(squared: _SplitSquared, start: int, stop: int, out: Tensor) -> Tensor:
    """Cosines at the vertices j in [start, stop) of every (i, j, k), from squared distances.

    ``cos(i, j, k) = (d_ji^2 + d_jk^2 - d_ik^2) / (2 d_ji d_jk)`` (law of cosines, the same
    number as <e_ij, e_kj> of eq. 9), for each matrix of the stack, written into ``out``
    ([M, c, N, N], indexed ``[m, j - start, i, k]``); 0 when d_ji or d_jk is zero (the
    unit vector of a zero vector is the zero vector, as in the authors' F.normalize). The
    numerator adds the hi parts first (exact), then the lo parts. The factor
    ``1 / (2 d_ji d_jk)`` is applied as two broadcast products, never stored.
    """
    hi, lo, inverse = (part[:, start:stop].unsqueeze(3) for part in squared)  # [M, c, N, 1]: row j of each
    cosines = torch.sub(hi, squared.hi.unsqueeze(1), out=out).add_(hi.transpose(2, 3))  # hi_ji - hi_ik + hi_jk
    cosines.add_(lo).add_(lo.transpose(2, 3)).sub_(squared.lo.unsqueeze(1))
    return cosines.mul_(inverse).mul_(0.5 * inverse.transpose(2, 3))


def _add_angle_gradient(grad: Tensor, slope: Tensor, cosines: Tensor, inverse: Tensor, start: int,
                        scratch: Tensor) -> None:
    """Add the chunk's part of dL/d(sq) to ``grad`` (unscaled by 1/N^3); ``slope`` and
    ``scratch`` (a block of the chunk's shape) are overwritten.

    With c the student cosine at vertex j, a_i = d_ji^2, b_ik = d_ik^2, u_i = 1 / d_ji and
    g the slope of eq. 8 at (c_s - c_t): dc/db_ik = -u_i u_k / 2 and
    dc/da_i = u_i u_k / 2 - c u_i^2 / 2. Since c and g are symmetric in (i, k),
        dL/da_i = sum_k P_ik - u_i^2 sum_k g_ik c_ik,   dL/db_ik = -sum_j P_ik / 2,
    with P = g u_i u_k. Entries with a zero distance carry cosine 0 and get no gradient.
    """
    chunk = slope.shape[0]
    g_dot_cos = torch.mul(slope, cosines, out=scratch).sum(dim=2)  # [c, N]: sum_k g_ik c_ik
    inverse = inverse.unsqueeze(2)
    products = slope.mul_(inverse).mul_(inverse.transpose(1, 2))
    grad[start:start + chunk].add_(products.sum(dim=2)).addcmul_(inverse.squeeze(2).square(), g_dot_cos, value=-1.0)
    grad.view(1, -1).addmm_(products.new_ones(1, chunk), products.view(chunk, -1), alpha=-0.5)


def _vertex_chunk(n: int, device: torch.device) -> int:
    budget = ANGLE_CHUNK_ELEMENTS_CUDA if device.type == "cuda" else ANGLE_CHUNK_ELEMENTS
    return max(1, min(n, budget // (n * n)))


class _AngleLossFromSquaredDistances(torch.autograd.Function):
    """Eq. 10 (smooth-L1 summed over the triples whose vertex is in ``vertices``, divided
    by N^3) from two N x N float64 squared-distance matrices, computed in ``work_dtype``
    (default: theirs) from their (hi, lo) splits.

    One sweep over the vertices, a chunk at a time, computes the cosines of the chunk's
    triples for both matrices (stacked, so that each step is one operation for both),
    the loss, and (``needs_grad``) the gradient with respect to the student's matrix
    (:func:`_add_angle_gradient`), so that no N^3 value is kept; the backward only scales
    that gradient by the incoming one. Three [chunk, N, N] blocks are allocated once and
    reused by every chunk.
    """

    @staticmethod
    def forward(ctx, student_squared: Tensor, teacher_squared: Tensor, work_dtype: torch.dtype | None = None,
                vertices: tuple[int, int] | None = None, needs_grad: bool = True) -> Tensor:
        n = student_squared.shape[0]
        start, stop = (0, n) if vertices is None else vertices
        work_dtype = student_squared.dtype if work_dtype is None else work_dtype
        split = _split_squared_distances(torch.stack((student_squared, teacher_squared)), work_dtype)
        step = max(0, min(_vertex_chunk(n, student_squared.device), stop - start))
        pair_blocks, scratch_block = split.hi.new_empty(2, step, n, n), split.hi.new_empty(step, n, n)
        total = split.hi.new_zeros((), dtype=torch.float64)  # hundreds of chunk sums add up without loss
        grad = split.hi.new_zeros(n, n) if needs_grad else None
        for first in range(start, stop, max(1, step)):
            last = min(stop, first + step)
            student_cos, teacher_cos = _vertex_cosines(split, first, last, pair_blocks[:, :last - first])
            difference = torch.sub(student_cos, teacher_cos, out=teacher_cos)
            slope = torch.clamp(difference, -1.0, 1.0, out=scratch_block[:last - first])
            total += _smooth_l1_sum(difference, slope)
            if grad is not None:  # the difference is spent: its block is the scratch space now
                _add_angle_gradient(grad, slope, student_cos, split.inverse[0, first:last], first, teacher_cos)
        if grad is not None:
            ctx.save_for_backward(grad.mul_(1.0 / n**3))
        ctx.input_dtype = student_squared.dtype
        return (total / n**3).to(work_dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        (grad,) = ctx.saved_tensors
        return (grad * grad_output).to(ctx.input_dtype), None, None, None, None


def _vertex_bounds(vertices: slice | range | None, n: int) -> tuple[int, int]:
    if vertices is None:
        return 0, n
    if not isinstance(vertices, (slice, range)) or vertices.step not in (None, 1):
        raise TypeError(f"rkd_angle: vertices must be a slice or range of step 1, got {vertices!r}")
    start = 0 if vertices.start is None else int(vertices.start)
    stop = n if vertices.stop is None else int(vertices.stop)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rkd_angle: vertices [{start}, {stop}) are not within the batch of {n} rows; "
                         f"give 0 <= start <= stop <= {n}")
    return start, stop


def rkd_angle(student: Tensor, teacher: Tensor, *, vertices: slice | range | None = None) -> Tensor:
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
    over the vertex j (memory O(chunk * N^2)), with the gradient formed in the same sweep;
    the only D-dependent work is one float64 Gram matrix per input and one float64 matrix
    product in the backward pass (:func:`pairwise_squared_distances`).

    Args:
        student: [N, D_s] student embeddings.
        teacher: [N, D_t] teacher embeddings; detached here.
        vertices: only the triples whose vertex j lies in this ``slice``/``range`` of
            rows (step 1), still divided by N^3: over a partition of the rows the parts
            add up to the whole loss, gradients included, at a fraction of its cost
            (data-parallel processes each take their own rows, see
            :mod:`rkd.train.distributed`). Default: all of them.

    Returns:
        A scalar in the student's dtype.

    Raises:
        ValueError: N < 3, different N, non-2-D inputs, or vertices outside the batch.
    """
    _check_relational_inputs(student, teacher, minimum=3, loss_name="rkd_angle")
    bounds = _vertex_bounds(vertices, student.shape[0])
    work_dtype = torch.promote_types(torch.promote_types(student.dtype, teacher.dtype), torch.float32)
    with torch.no_grad():
        teacher_squared = pairwise_squared_distances(teacher.detach(), torch.float64)
    student_squared = pairwise_squared_distances(student, torch.float64)
    needs_grad = torch.is_grad_enabled() and student_squared.requires_grad
    loss = _AngleLossFromSquaredDistances.apply(student_squared, teacher_squared, work_dtype, bounds, needs_grad)
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
        """``lambda_d`` * :func:`rkd_distance` (eq. 7) + ``lambda_a`` * :func:`rkd_angle`
        (eq. 10) of ``student`` [N, D_s] and ``teacher`` [N, D_t] embeddings: a scalar
        tensor (a zero weight skips its loss). Raises what those functions raise."""
        loss = student.new_zeros(())
        if self.lambda_d:
            loss = loss + self.lambda_d * rkd_distance(student, teacher)
        if self.lambda_a:
            loss = loss + self.lambda_a * rkd_angle(student, teacher)
        return loss

    def extra_repr(self) -> str:
        return f"lambda_d={self.lambda_d}, lambda_a={self.lambda_a}"
