"""Squared distances between the rows of a batch, from its Gram matrix, with the
cancellation of ``|x_i|^2 + |x_j|^2 - 2 <x_i, x_j>`` handled. Used by the RKD losses
(:mod:`rkd.losses.relational`).

**How.** The rows are centred first (distances do not change under translation, and a
common offset is what makes the three terms large against their difference), then

    sq_ij = n_i + n_j - 2 <c_i, c_j>,    n_i = |c_i|^2,

one matrix product for the whole batch. Its error bound decides what happens next.
A dot product of length D computed in a floating-point format of unit roundoff u is off
by at most gamma_D |c_i| |c_j| with gamma_D = D u / (1 - D u) (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., section 3.1), and by about sqrt(D) u |c_i|
|c_j| when the rounding errors behave like independent random variables (Higham & Mary,
SIAM J. Sci. Comput. 41(5), 2019), so

    |computed sq_ij - sq_ij| <= eps (n_i + n_j),   eps ~ 2 D u (worst case), ~ 2 sqrt(D) u (in practice).

Relative to sq_ij that is ``eps (n_i + n_j) / sq_ij``: harmless for well-separated rows,
ruinous for close ones. So every pair with ``sq_ij <= T (n_i + n_j)`` (the *close pairs*;
T in :data:`CLOSE_PAIR_THRESHOLD`) is recomputed from its difference vector,
``sum_d (x_id - x_jd)^2`` (the rows as given: one rounding per difference), a sum of D
non-negative terms with no cancellation: relative error below gamma_D + 2u, whatever
the distance. Every other pair keeps a relative error below
eps / T. In float32, T = 2^-4: at most 32 sqrt(D) u in practice, 8.6e-5 at D = 2048
(distances: half of that), and far less for typical pairs; the authors' form, which
neither centres nor recomputes, has the same eps relative to the *uncentred* norms and no
bound at all for close pairs. In float64, T = 1e-6: at most about 2e6 sqrt(D) u, 1e-8 at
D = 2048.

**Float64 fallback.** Recomputing a pair costs about D of the (much faster) matrix
product's multiply-adds per pair; when more than a quarter of the pairs are close
(:data:`FLOAT64_FALLBACK_FRACTION`: tight clusters everywhere, where float32 would lose
digits on most of the batch), a float64 Gram matrix, whose own close pairs are far
fewer, costs less: the float32 request returns float64 squared distances then.
Float32 matrix products must really be float32 for these bounds: where they are allowed
to run in TF32 or bfloat16 (``torch.set_float32_matmul_precision`` other than
``"highest"``), the Gram matrix is computed in float64.

**Exact zeros.** The diagonal, and every pair whose squared distance is at most
``1e-12 (n_i + n_j)`` (duplicate rows; coincident pairs are always among the close ones,
so their value is the exact one) are exactly 0 and pass no gradient, so that no rounding
residue leaks into means or gradients.

**Hi/lo split** (:func:`split_squared_distances`): squared distances carried into a
working dtype (float32) as ``hi + lo``, the hi parts multiples of one power of two per
matrix, so that sums and differences of three hi parts are exact (the law of cosines of
RKD-A subtracts squared distances).

**Backward** (:func:`gram_backward`): with W = G + G^T for the incoming gradient G (the
diagonal, the close pairs and the coincident pairs zeroed), the rows' gradient is
``2 (diag(W 1) C - W C)``, one matrix product; the close pairs add theirs from their
difference vectors, exactly. Centring needs no backward term: the columns of that
gradient sum to zero.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["squared_distances", "gram_squared_distances", "stacked_gram_squared_distances", "gram_backward",
           "gram_dtype", "to_dtype", "GramDistances", "SplitSquared", "split_squared_distances",
           "CLOSE_PAIR_THRESHOLD", "COINCIDENT_RELATIVE_TOLERANCE", "FLOAT64_FALLBACK_FRACTION"]

#: per Gram dtype: pairs with ``sq_ij <= T (n_i + n_j)`` are recomputed from their difference
CLOSE_PAIR_THRESHOLD = {torch.float32: 2.0**-4, torch.float64: 1e-6}
#: pairs with ``sq_ij <= 1e-12 (n_i + n_j)`` (closer than 1e-6 of their centred norms) are
#: coincident: distance exactly 0, no gradient through their difference. Float32 resolves
#: about 1e-7, so rows 1e-7 to 1e-6 apart count as duplicates too.
COINCIDENT_RELATIVE_TOLERANCE = 1e-12
#: a float32 request falls back to float64 when more than this fraction of the pairs is close
FLOAT64_FALLBACK_FRACTION = 0.25
#: elements per [pairs, D] block when recomputing close pairs
DIRECT_CHUNK_ELEMENTS = 1 << 18


class GramDistances(NamedTuple):
    """What :func:`gram_squared_distances` computed, and what its backward needs."""

    squared: Tensor | None  # [N, N] squared distances, in the Gram matrix's dtype (None: kept for the backward)
    centred: Tensor  # [N, D] the centred rows, same dtype
    points: Tensor  # [N, D] the rows as given (close pairs take their differences from these)
    rows: Tensor | None  # [P] close pairs (rows < cols), recomputed from their differences; None: none
    cols: Tensor | None  # [P]
    coincident: Tensor | None  # [P] bool: which of them are exactly 0


def gram_dtype(x: Tensor) -> torch.dtype:
    """The dtype :func:`squared_distances` computes in for ``x`` by default: float64 for
    float64 inputs, float32 for the rest (bfloat16 and float16 included), float64 when
    float32 matrix products may run at reduced precision (TF32, bfloat16)."""
    if x.dtype == torch.float64 or torch.get_float32_matmul_precision() != "highest":
        return torch.float64
    return torch.float32


def squared_distances(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``[N, D] -> [N, N]`` squared Euclidean distances between the rows of ``x``, computed
    in ``dtype`` (default :func:`gram_dtype`; a float32 request may return float64, see
    the module docstring). Differentiable (hand-written backward, O(N^2 + N D) memory)."""
    dtype = gram_dtype(x) if dtype is None else dtype
    if torch.is_grad_enabled() and x.requires_grad:
        return _SquaredDistances.apply(x, dtype)
    return gram_squared_distances(x, dtype).squared


def gram_squared_distances(x: Tensor, dtype: torch.dtype) -> GramDistances:
    """The forward computation of :func:`squared_distances`, without autograd."""
    if dtype not in CLOSE_PAIR_THRESHOLD:
        raise ValueError(f"squared distances are computed in float32 or float64, not {dtype}")
    n = x.shape[0]
    centred, norms, squared = _gram_form(x, dtype)
    rows, cols = _close_pairs(squared, norms, CLOSE_PAIR_THRESHOLD[dtype])
    if dtype == torch.float32 and rows is not None and rows.numel() > FLOAT64_FALLBACK_FRACTION * n * (n - 1) / 2:
        centred, norms, squared = _gram_form(x, torch.float64)
        rows, cols = _close_pairs(squared, norms, CLOSE_PAIR_THRESHOLD[torch.float64])
    coincident = None if rows is None else _recompute_close_pairs(squared, norms, x, rows, cols)
    return GramDistances(squared, centred, x, rows, cols, coincident)


def stacked_gram_squared_distances(batches: tuple[Tensor, ...]) -> tuple[Tensor, list[GramDistances]]:
    """:func:`gram_squared_distances` in float64 of batches of the same size N ([N, D_m],
    widths may differ): their squared distances stacked ([M, N, N], each GramDistances'
    ``squared`` a view of it) and what each backward needs.

    The same numbers: each batch has its own Gram matrix, and every later step is
    elementwise or a per-matrix test, here taken once for the whole stack (fewer, larger
    operations: what the fixed cost of an operation makes worth it at small N)."""
    dtype = torch.float64
    threshold = CLOSE_PAIR_THRESHOLD[dtype]
    # autocast casts no float64 tensor, and everything after the conversion is float64
    forms = [_gram_products(x, dtype) for x in batches]
    squared = torch.stack([form[2] for form in forms])
    norms = torch.stack([form[1] for form in forms])
    squared += norms.unsqueeze(2)
    screened = _screen_close_pairs(squared, norms, threshold)
    grams = []
    for m, (x, (centred, _, _), matrix) in enumerate(zip(batches, forms, squared.unbind())):
        rows = cols = coincident = None
        if not screened[m]:
            rows, cols = _close_pair_indices(matrix, norms[m], threshold)
            if rows is not None:
                coincident = _recompute_close_pairs(matrix, norms[m], x, rows, cols)
        grams.append(GramDistances(matrix, centred, x, rows, cols, coincident))
    return squared, grams


def gram_backward(grad_squared: Tensor, gram: GramDistances) -> Tensor:
    """The rows' gradient (in the Gram matrix's dtype) from the gradient of the squared
    distances (see the module docstring)."""
    centred, rows, cols = gram.centred, gram.rows, gram.cols
    weights = grad_squared if grad_squared.dtype == centred.dtype else grad_squared.to(centred.dtype)
    weights = weights + weights.T  # sq_ij and sq_ji are the same function of the rows
    weights.fill_diagonal_(0.0)
    close_weights = None
    if rows is not None:
        close_weights = weights[rows, cols].masked_fill_(gram.coincident, 0.0)
        weights.index_put_((rows, cols), weights.new_zeros(()))
        weights.index_put_((cols, rows), weights.new_zeros(()))
    grad = torch.addmm(centred * weights.sum(1, True), weights, centred, beta=2.0, alpha=-2.0)  # keepdim
    if close_weights is not None:
        _add_direct_gradient(grad, gram.points, rows, cols, close_weights.mul_(2.0))
    return grad


class _SquaredDistances(torch.autograd.Function):
    """:func:`squared_distances` with its hand-written backward."""

    @staticmethod
    def forward(ctx, x: Tensor, dtype: torch.dtype) -> Tensor:
        gram = gram_squared_distances(x, dtype)
        ctx.save_for_backward(*gram)
        ctx.input_dtype = x.dtype
        return gram.squared

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_squared: Tensor):
        return gram_backward(grad_squared, GramDistances(*ctx.saved_tensors)).to(ctx.input_dtype), None


def _gram_form(x: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Centred rows, their squared norms, and ``n_i + n_j - 2 <c_i, c_j>``."""
    if torch.is_autocast_enabled(x.device.type):  # a matrix product there would run in bfloat16 or float16
        with torch.autocast(x.device.type, enabled=False):
            return _gram_form(x, dtype)
    centred, norms, squared = _gram_products(x, dtype)
    squared += norms.unsqueeze(1)
    return centred, norms, squared


def _gram_products(x: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Centred rows, their squared norms, and ``n_j - 2 <c_i, c_j>`` (:func:`_gram_form` adds
    n_i), as autocast leaves them (the callers see to it).

    Positional arguments where the signature allows: keywords cost about a microsecond of
    parsing an operation, which counts at small N."""
    x = to_dtype(x, dtype)
    centred = x - x.mean(0, True)  # keepdim
    norms = (centred * centred).sum(1)
    # the matrix product writes into the broadcast norms
    return centred, norms, torch.addmm(norms.unsqueeze(0), centred, centred.T, alpha=-2.0)


def _close_pairs(squared: Tensor, norms: Tensor, threshold: float) -> tuple[Tensor | None, Tensor | None]:
    """Index pairs (i < j) with ``sq_ij <= T (n_i + n_j)`` (None, None: there is none); the
    diagonal set to 0."""
    if _screen_close_pairs(squared.unsqueeze(0), norms.unsqueeze(0), threshold)[0]:
        return None, None
    return _close_pair_indices(squared, norms, threshold)


def _screen_close_pairs(squared: Tensor, norms: Tensor, threshold: float) -> list[bool]:
    """For each matrix of a stack ([M, N, N], norms [M, N]): True when it has no close pair,
    by one number (n_i + n_j <= 2 max(n), so none is close if the smallest off-diagonal
    squared distance exceeds 2 T max(n)); the diagonals set to 0."""
    diagonals = squared.diagonal(0, 1, 2)
    diagonals.fill_(float("inf"))
    smallest, largest = squared.amin((1, 2)).tolist(), norms.amax(1).tolist()
    diagonals.zero_()
    return [low > 2.0 * threshold * high for low, high in zip(smallest, largest)]


def _close_pair_indices(squared: Tensor, norms: Tensor, threshold: float) -> tuple[Tensor | None, Tensor | None]:
    """The test of :func:`_close_pairs` for every pair i < j (the diagonal is not looked at)."""
    bounds = (norms.unsqueeze(1) + norms.unsqueeze(0)).mul_(threshold)
    rows, cols = torch.le(squared, bounds).triu_(diagonal=1).nonzero(as_tuple=True)
    return (rows, cols) if rows.numel() else (None, None)


def _recompute_close_pairs(squared: Tensor, norms: Tensor, points: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Write the close pairs' squared distances from their differences into ``squared``
    (both triangles), exact zeros for the coincident ones; returns which those are."""
    direct = _direct_squared_distances(points, rows, cols, squared.dtype)
    coincident = direct <= COINCIDENT_RELATIVE_TOLERANCE * (norms[rows] + norms[cols])
    direct.masked_fill_(coincident, 0.0)
    squared.index_put_((rows, cols), direct)
    squared.index_put_((cols, rows), direct)
    return coincident


class SplitSquared(NamedTuple):
    """Float64 squared-distance matrices ([M, N, N], a stack) carried in a working dtype:
    ``hi + lo`` equals each to within the rounding of ``lo``; ``inverse`` is ``1 / d`` (0
    where d = 0)."""

    hi: Tensor
    lo: Tensor
    inverse: Tensor


def split_squared_distances(squared: Tensor, dtype: torch.dtype) -> SplitSquared:
    """Split float64 squared-distance matrices ([M, N, N]) into ``hi + lo`` in ``dtype``
    (for the law of cosines of :func:`rkd.losses.rkd_angle`).

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
    significand_bits = _significand_bits(dtype)
    quanta = [math.ldexp(1.0, (math.frexp(largest)[1] if largest > 0 else 0) - (significand_bits - 2))
              for largest in squared.amax((-2, -1)).tolist()]  # each largest < 2^exponent
    # One quantum for all on the CPU: a number, not a tensor to make (microseconds at small N).
    # ATen's CPU kernels divide by a number as by a tensor; CUDA's multiply by its reciprocal.
    quantum = quanta[0] if squared.is_cpu and quanta.count(quanta[0]) == len(quanta) else \
        torch.tensor(quanta, dtype=squared.dtype, device=squared.device).view(-1, 1, 1)
    hi = (squared / quantum).round_().mul_(quantum)  # multiples of a power of two: exact
    # 1 / d from the squared distance rounded to dtype (squared distances >= 0; 1 / 0 -> 0)
    if dtype == squared.dtype:
        return SplitSquared(hi, squared - hi, squared.rsqrt().nan_to_num_(0.0, 0.0))  # nan, posinf -> 0
    inverse = to_dtype(squared, dtype).rsqrt_().nan_to_num_(0.0, 0.0)
    # lo: the difference taken in squared's dtype, rounded to dtype as it is stored (one op, no temporary)
    lo = torch.sub(squared, hi, out=torch.empty_like(inverse))
    return SplitSquared(to_dtype(hi, dtype), lo, inverse)


@functools.cache  # dtype figures, worked out once
def _significand_bits(dtype: torch.dtype) -> int:
    return 1 - round(math.log2(torch.finfo(dtype).eps))  # 24 for float32, 53 for float64


def to_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)``; ``x.float()`` and ``x.double()`` parse no arguments (a microsecond,
    which counts at small N)."""
    if dtype == torch.float32:
        return x.float()
    return x.double() if dtype == torch.float64 else x.to(dtype)


def _pair_blocks(pairs: int, dim: int):
    step = max(1, DIRECT_CHUNK_ELEMENTS // max(1, dim))
    for start in range(0, pairs, step):
        yield slice(start, start + step)


def _differences(points: Tensor, rows: Tensor, cols: Tensor, dtype: torch.dtype) -> Tensor:
    """``x_r - x_c`` in ``dtype`` from the rows as given, not the centred ones: one rounding
    of the exact difference (none for float32 rows in float64), where the centred rows'
    own roundings would be relative to their norms, not to the pair's distance."""
    return points[rows].to(dtype) - points[cols].to(dtype)


def _direct_squared_distances(points: Tensor, rows: Tensor, cols: Tensor, dtype: torch.dtype) -> Tensor:
    """``sum_d (x[r_p, d] - x[c_p, d])^2`` for each pair p, in blocks of pairs."""
    out = points.new_empty(rows.shape[0], dtype=dtype)
    for block in _pair_blocks(rows.shape[0], points.shape[1]):
        difference = _differences(points, rows[block], cols[block], dtype)
        out[block] = (difference * difference).sum(dim=1)
    return out


def _add_direct_gradient(grad: Tensor, points: Tensor, rows: Tensor, cols: Tensor, weights: Tensor) -> None:
    """``grad[r_p] += w_p (x_r - x_c)`` and ``grad[c_p] -= w_p (x_r - x_c)``, in blocks of pairs."""
    for block in _pair_blocks(rows.shape[0], points.shape[1]):
        r, c = rows[block], cols[block]
        weighted = _differences(points, r, c, grad.dtype).mul_(weights[block].unsqueeze(1))
        grad.index_add_(0, r, weighted)
        grad.index_add_(0, c, weighted.neg_())
