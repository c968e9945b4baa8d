"""RKD-A over a range of vertices: the part of eq. 10 whose triples have their angle's
vertex among given rows, for the "local anchors against the global batch" option of
data parallelism (:mod:`rkd.train.distributed`).

RKD-A is a mean over all N^3 triples (i, j, k) of the global batch, the angle taken at
the vertex j. Split the vertices into the processes' own rows: process r computes

    P_r = (1 / N^3) * sum over j in its rows, all i, all k of smooth_l1(cos_s(i, j, k), cos_t(i, j, k)),

so that ``sum_r P_r`` is exactly :func:`rkd.losses.rkd_angle` on the global batch, at
1/W of its cost on each process (N^3 / W instead of N^3). Every other row still enters
each triple as i or k, through the gathered embeddings.

The numerics are :func:`rkd.losses.rkd_angle`'s (float64 Gram matrices, the (hi, lo)
split of the squared distances, the law of cosines, zero vectors for zero differences,
the chunked analytic backward), restricted to the vertices ``[start, stop)``; it reuses
that module's helpers so that the two cannot drift apart in what they compute.
``tests/test_distributed.py`` checks that partials over a partition of the vertices sum
to :func:`rkd.losses.rkd_angle` and its gradient, and gradcheck in float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..losses.relational import (
    ANGLE_CHUNK_ELEMENTS,
    ANGLE_CHUNK_ELEMENTS_CUDA,
    _check_relational_inputs,
    _scale_by_half_inverse_product,
    _split_squared_distances,
    _SplitSquared,
    _vertex_cosines,
    pairwise_squared_distances,
)

__all__ = ["rkd_angle_over_vertices"]


def _chunks(n: int, start: int, stop: int, device: torch.device):
    budget = ANGLE_CHUNK_ELEMENTS_CUDA if device.type == "cuda" else ANGLE_CHUNK_ELEMENTS
    step = max(1, min(n, budget // (n * n)))
    for first in range(start, stop, step):
        yield first, min(stop, first + step)


class _AngleLossOverVertices(torch.autograd.Function):
    """``rkd.losses.relational._AngleLossFromSquaredDistances`` with the vertices limited
    to ``[start, stop)``: forward and backward are its loops over fewer chunks (the
    derivation is in its docstring); the normaliser stays N^3."""

    @staticmethod
    def forward(ctx, student_squared: Tensor, teacher_squared: Tensor, start: int, stop: int,
                work_dtype: torch.dtype) -> Tensor:
        n = student_squared.shape[0]
        student_split = _split_squared_distances(student_squared, work_dtype)
        teacher_split = _split_squared_distances(teacher_squared, work_dtype)
        total = student_split.value.new_zeros(())
        for first, last in _chunks(n, start, stop, student_squared.device):
            student_cos = _vertex_cosines(student_split, first, last)[0]
            teacher_cos = _vertex_cosines(teacher_split, first, last)[0]
            total += F.smooth_l1_loss(student_cos, teacher_cos, reduction="sum", beta=1.0)
        ctx.save_for_backward(*student_split, *teacher_split)
        ctx.range = (start, stop)
        ctx.input_dtype = student_squared.dtype
        return total / n**3

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        student_split = _SplitSquared(*ctx.saved_tensors[:3])
        teacher_split = _SplitSquared(*ctx.saved_tensors[3:])
        n = student_split.value.shape[0]
        grad = torch.zeros_like(student_split.value)
        for first, last in _chunks(n, *ctx.range, grad.device):
            c = last - first
            student_cos, inverse_length = _vertex_cosines(student_split, first, last)
            teacher_cos = _vertex_cosines(teacher_split, first, last)[0]
            g = torch.sub(student_cos, teacher_cos, out=teacher_cos).clamp_(-1.0, 1.0)
            g_dot_cos = torch.bmm(g.view(c * n, 1, n), student_cos.view(c * n, n, 1)).view(c, n)
            g_over_lengths = torch.bmm(g, inverse_length.unsqueeze(2)).squeeze(2) * inverse_length
            grad[:, first:last] += (g_over_lengths - g_dot_cos * inverse_length.pow(2)).T
            weighted = _scale_by_half_inverse_product(g, inverse_length).view(c, n * n)
            grad -= (weighted.new_ones(1, c) @ weighted).view(n, n)
        return (grad * (grad_output / n**3)).to(ctx.input_dtype), None, None, None, None


def rkd_angle_over_vertices(student: Tensor, teacher: Tensor, start: int, stop: int) -> Tensor:
    """The triples of RKD-A (eq. 10) whose vertex j lies in ``[start, stop)``, summed and
    divided by N^3 (see the module docstring): over a partition of ``0..N`` the parts add
    up to :func:`rkd.losses.rkd_angle` ``(student, teacher)``, gradients included.

    Args:
        student: [N, D_s] student embeddings (the whole global batch).
        teacher: [N, D_t] teacher embeddings; detached here.
        start, stop: the vertices, ``0 <= start <= stop <= N``.
    """
    _check_relational_inputs(student, teacher, minimum=3, loss_name="rkd_angle")
    n = student.shape[0]
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rkd_angle_over_vertices: vertices [{start}, {stop}) are not within the batch of {n}")
    work_dtype = torch.promote_types(torch.promote_types(student.dtype, teacher.dtype), torch.float32)
    with torch.no_grad():
        teacher_squared = pairwise_squared_distances(teacher.detach())
    student_squared = pairwise_squared_distances(student)
    loss = _AngleLossOverVertices.apply(student_squared, teacher_squared, int(start), int(stop), work_dtype)
    return loss.to(student.dtype)
