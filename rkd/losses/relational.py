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
(:func:`rkd.losses.pairwise.split_squared_distances`), which keeps float32 cosines as
accurate as the authors' float32 unit vectors. Both losses compute their gradient with
respect to the squared distances during the forward pass (for RKD-A: one sweep over the
N^3 triples instead of two), and their backward only scales it. At small N the fixed
cost of each tensor operation dominates RKD-A, so it is one autograd node that runs in
inference mode and makes no operation twice.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .pairwise import (GramDistances, SplitSquared, gram_backward, gram_dtype, gram_squared_distances, to_dtype,
                       split_squared_distances, squared_distances, stacked_gram_squared_distances)

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


def _cosine_views(split: SplitSquared) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
    """Broadcast views of a split stack, made once per call: the rows j of each matrix of
    hi, lo and 1/d as ``[M, N, N, 1]`` (index ``[m, j, i, 0]``: "ji") or ``[M, N, 1, N]``
    (``[m, j, 0, k]``: "jk"), which a chunk of vertices slices; hi and lo whole as
    ``[M, 1, N, N]`` ("ik")."""
    rows = tuple(view for part in split for view in (part.unsqueeze(3), part.unsqueeze(2)))
    return rows, split.hi.unsqueeze(1), split.lo.unsqueeze(1)


def _vertex_cosines(views: tuple[tuple[Tensor, ...], Tensor, Tensor], vertices: slice | None, out: Tensor) -> Tensor:
    """Cosines at the vertices j in ``vertices`` (None: all) of every (i, j, k), from squared
    distances.

    ``cos(i, j, k) = (d_ji^2 + d_jk^2 - d_ik^2) / (2 d_ji d_jk)`` (law of cosines, the same
    number as <e_ij, e_kj> of eq. 9), for each matrix of the stack, written into ``out``
    ([M, c, N, N], indexed ``[m, j - start, i, k]``); 0 when d_ji or d_jk is zero (the
    unit vector of a zero vector is the zero vector, as in the authors' F.normalize). The
    numerator adds the hi parts first (exact), then the lo parts. The factor
    ``1 / (2 d_ji d_jk)`` is applied as two broadcast products, never stored.
    """
    rows, hi_ik, lo_ik = views  # see _cosine_views
    if vertices is not None:
        rows = [part[:, vertices] for part in rows]
    hi_ji, hi_jk, lo_ji, lo_jk, inverse_ji, inverse_jk = rows
    cosines = torch.sub(hi_ji, hi_ik, out=out).add_(hi_jk)  # hi_ji - hi_ik + hi_jk
    cosines.add_(lo_ji).add_(lo_jk).sub_(lo_ik)
    return cosines.mul_(inverse_ji).mul_(0.5 * inverse_jk)


class _GradientViews(NamedTuple):
    """What :func:`_add_angle_gradient` needs besides the chunk's blocks, made once per call."""

    grad: Tensor  # [N, N] dL/d(sq) so far, unscaled
    grad_row: Tensor  # the same as [1, N^2]
    ones: Tensor  # [1, chunk] ones: the column sums of a chunk's products, as one matrix product
    inverse: Tensor  # [N, N] the student's u_i = 1 / d_ji at [j, i]
    inverse_ji: Tensor  # [N, N, 1] the same at [j, i, 0]
    inverse_jk: Tensor  # [N, 1, N] the same at [j, 0, k]


def _gradient_views(grad: Tensor, inverse: Tensor, chunk: int) -> _GradientViews:
    return _GradientViews(grad, grad.view(1, -1), inverse.new_ones(1, chunk), inverse, inverse.unsqueeze(2),
                          inverse.unsqueeze(1))


def _add_angle_gradient(views: _GradientViews, vertices: slice | None, slope: Tensor, cosines: Tensor,
                        scratch: Tensor) -> None:
    """Add the chunk's part of dL/d(sq) to ``views.grad`` (unscaled by 1/N^3); ``slope``
    and ``scratch`` (a block of the chunk's shape) are overwritten.

    With c the student cosine at vertex j, a_i = d_ji^2, b_ik = d_ik^2, u_i = 1 / d_ji and
    g the slope of eq. 8 at (c_s - c_t): dc/db_ik = -u_i u_k / 2 and
    dc/da_i = u_i u_k / 2 - c u_i^2 / 2. Since c and g are symmetric in (i, k),
        dL/da_i = sum_k P_ik - u_i^2 sum_k g_ik c_ik,   dL/db_ik = -sum_j P_ik / 2,
    with P = g u_i u_k. Entries with a zero distance carry cosine 0 and get no gradient.
    """
    chunk = slope.shape[0]
    parts = views.grad, views.inverse, views.inverse_ji, views.inverse_jk  # the chunk's rows of each
    grad, inverse, inverse_ji, inverse_jk = parts if vertices is None else [part[vertices] for part in parts]
    g_dot_cos = torch.mul(slope, cosines, out=scratch).sum(2)  # [c, N]: sum_k g_ik c_ik
    products = slope.mul_(inverse_ji).mul_(inverse_jk)
    grad.add_(products.sum(2)).addcmul_(inverse.square(), g_dot_cos, value=-1.0)
    ones = views.ones if chunk == views.ones.shape[1] else views.ones[:, :chunk]
    views.grad_row.addmm_(ones, products.view(chunk, -1), alpha=-0.5)


def _vertex_chunk(n: int, on_cuda: bool) -> int:
    budget = ANGLE_CHUNK_ELEMENTS_CUDA if on_cuda else ANGLE_CHUNK_ELEMENTS
    return max(1, min(n, budget // (n * n)))


def _angle_sweep(squared: Tensor, work_dtype: torch.dtype, start: int, stop: int,
                 grad: Tensor | None) -> list[Tensor]:
    """Eq. 10 over the vertices in [start, stop) from a stack of the student's and the
    teacher's float64 squared distances ([2, N, N]), in ``work_dtype``: the smooth-L1 sum
    of each chunk of vertices (0-dim, for :func:`_mean_over_triples`); the loss's gradient
    with respect to the student's squared distances goes into ``grad`` ([N, N] zeros in
    ``work_dtype``; None: no gradient).

    One sweep over the vertices, a chunk at a time, computes the cosines of the chunk's
    triples for both matrices (stacked, so that each step is one operation for both),
    the loss, and the gradient (:func:`_add_angle_gradient`), so that no N^3 value is
    kept. Three [chunk, N, N] blocks are allocated once and reused by every chunk; the
    broadcast views of the N x N matrices are made once, and a single chunk (N up to 64
    on the CPU) takes them whole.
    """
    n = squared.shape[-1]
    split = split_squared_distances(squared, work_dtype)
    step = max(0, min(_vertex_chunk(n, squared.is_cuda), stop - start))
    pair_blocks, scratch_block = split.hi.new_empty(2, step, n, n), split.hi.new_empty(step, n, n)
    student_block, teacher_block = pair_blocks[0], pair_blocks[1]
    chunk_sums = []
    cosine_views = _cosine_views(split)
    gradient_views = None if grad is None else _gradient_views(grad, split.inverse[0], step)
    for first in range(start, stop, max(1, step)):
        last = min(stop, first + step)
        vertices = None if last - first == n else slice(first, last)
        blocks, student_cos, teacher_cos, slope = pair_blocks, student_block, teacher_block, scratch_block
        if (c := last - first) != step:  # the last chunk, shorter
            blocks, student_cos, teacher_cos, slope = pair_blocks[:, :c], student_block[:c], teacher_block[:c], \
                scratch_block[:c]
        _vertex_cosines(cosine_views, vertices, blocks)
        difference = torch.sub(student_cos, teacher_cos, out=teacher_cos)
        slope = torch.clamp(difference, -1.0, 1.0, out=slope)
        chunk_sums.append(_smooth_l1_sum(difference, slope))
        if gradient_views is not None:  # the difference is spent: its block is the scratch space now
            _add_angle_gradient(gradient_views, vertices, slope, student_cos, teacher_cos)
    if grad is not None:
        grad.mul_(1.0 / n**3)
    return chunk_sums


def _mean_over_triples(chunk_sums: list[Tensor], n: int, work_dtype: torch.dtype, device: torch.device) -> Tensor:
    """The chunk sums added in float64 (hundreds add up without loss), divided by N^3, in
    ``work_dtype``. On the CPU in Python floats: float64 with the rounding of ATen's CPU
    kernels, and a 0-dim tensor operation costs microseconds. Elsewhere in tensors (a GPU
    divides by a scalar through its reciprocal, and would wait for each chunk's sum)."""
    if device.type == "cpu":
        total = 0.0
        for chunk_sum in chunk_sums:
            total += float(chunk_sum)
        # rounded to work_dtype as .to rounds; scalar_tensor refuses a finite number beyond
        # work_dtype's range, and this one is at most (chunks / N^3) x the float32 maximum
        return torch.scalar_tensor(total / n**3, dtype=work_dtype)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for chunk_sum in chunk_sums:
        total += chunk_sum
    return total.div_(n**3).to(work_dtype)


class _AngleLossFromSquaredDistances(torch.autograd.Function):
    """Eq. 10 (smooth-L1 summed over the triples whose vertex is in ``vertices``, divided
    by N^3) from two N x N float64 squared-distance matrices, in ``work_dtype`` (default:
    theirs), by :func:`_angle_sweep`; the backward only scales the gradient formed there.
    :func:`rkd_angle` goes through :class:`_AngleLoss`: the same numbers, from the rows.
    """

    @staticmethod
    def forward(ctx, student_squared: Tensor, teacher_squared: Tensor, work_dtype: torch.dtype | None = None,
                vertices: tuple[int, int] | None = None, needs_grad: bool = True) -> Tensor:
        n = student_squared.shape[0]
        start, stop = (0, n) if vertices is None else vertices
        work_dtype = student_squared.dtype if work_dtype is None else work_dtype
        squared = torch.stack((student_squared, teacher_squared))
        grad = squared.new_zeros((n, n), dtype=work_dtype) if needs_grad else None
        loss = _mean_over_triples(_angle_sweep(squared, work_dtype, start, stop, grad), n, work_dtype, squared.device)
        if grad is not None:
            ctx.save_for_backward(grad)
        ctx.input_dtype = student_squared.dtype
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        (grad,) = ctx.saved_tensors
        return (grad * grad_output).to(ctx.input_dtype), None, None, None, None


def _angle_loss(student: Tensor, teacher: Tensor, work_dtype: torch.dtype, vertices: tuple[int, int],
                needs_grad: bool) -> tuple[Tensor, Tensor | None, GramDistances | None]:
    """Eq. 10 from the rows: the float64 squared distances of both
    (:func:`rkd.losses.pairwise.stacked_gram_squared_distances`, the numbers of
    :func:`pairwise_squared_distances`) and :func:`_angle_sweep`; the loss and, with
    ``needs_grad``, its gradient with respect to the student's squared distances and what
    :func:`rkd.losses.pairwise.gram_backward` needs of the student's Gram matrix, as
    tensors that can be saved for the backward pass."""
    n = student.shape[0]
    grad = student.new_zeros((n, n), dtype=work_dtype) if needs_grad else None  # written in inference mode
    # Nothing here is recorded for autograd, and inference mode also skips autograd's
    # per-operation bookkeeping (dispatch, version counters, view metadata): a few hundred
    # nanoseconds an operation, several percent at N = 32. Its tensors stay out of
    # autograd: the loss is made after it, and what the backward pass needs is copied.
    with torch.inference_mode():
        squared, grams = stacked_gram_squared_distances((student, teacher))
        gram = grams[0]
        del grams  # the teacher's (its centred rows: [N, D_t]) need not outlive the sweep
        chunk_sums = _angle_sweep(squared, work_dtype, *vertices, grad)
    loss = _mean_over_triples(chunk_sums, n, work_dtype, student.device)
    if not needs_grad:
        return loss, None, None
    return loss, grad, GramDistances(None, gram.centred.clone(), student,  # the backward needs no squared distances
                                     *(None if part is None else part.clone() for part in gram[3:]))


def _rows_gradient(ctx, grad_output: Tensor) -> tuple[Tensor, None, None, None]:
    """:class:`_AngleLoss`'s backward: the gradient formed in the forward pass, times the
    incoming one, through the student's Gram matrix."""
    grad, *gram = ctx.saved_tensors
    # dL/d(sq) times the incoming gradient in the working dtype, stored as float64 (one op)
    grad_squared = torch.mul(grad, grad_output, out=grad.new_empty(grad.shape, dtype=torch.float64))
    rows = gram_backward(grad_squared, GramDistances(None, *gram))
    return to_dtype(rows, ctx.input_dtype), None, None, None


_rows_gradient_once = torch.autograd.function.once_differentiable(_rows_gradient)


class _AngleLoss(torch.autograd.Function):
    """Eq. 10 from the student's and the teacher's rows (:func:`_angle_loss`) in one
    autograd node, whose backward takes the gradient formed in the forward pass through
    the student's Gram matrix (:func:`rkd.losses.pairwise.gram_backward`). The same
    operations, in the same order, as :func:`pairwise_squared_distances` followed by
    :class:`_AngleLossFromSquaredDistances`, without the second node's fixed cost.
    """

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, work_dtype: torch.dtype, vertices: tuple[int, int]) -> Tensor:
        loss, grad, gram = _angle_loss(student, teacher, work_dtype, vertices, needs_grad=True)
        ctx.save_for_backward(grad, *gram[1:])  # the centred rows, the student's own rows, the close pairs
        ctx.input_dtype = student.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        # Gradient mode is off here unless the caller asked for create_graph=True; only then
        # is once_differentiable's wrapper (a no_grad block: microseconds) needed, to refuse
        # a second derivative as the other losses do.
        if torch.is_grad_enabled():
            return _rows_gradient_once(ctx, grad_output)
        return _rows_gradient(ctx, grad_output)


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
    if torch.is_grad_enabled() and student.requires_grad:
        # the teacher is detached: it gets no gradient, and the loss needs none through it
        loss = _AngleLoss.apply(student, teacher.detach() if teacher.requires_grad else teacher, work_dtype, bounds)
    else:  # no gradient to form, and no autograd node (what the loss is made of needs no gradient)
        loss = _angle_loss(student, teacher, work_dtype, bounds, needs_grad=False)[0]
    return loss if loss.dtype == student.dtype else loss.to(student.dtype)


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
