"""The authors' vectorised RKD forms, kept as the baseline that ``rkd.losses`` is tested
and benchmarked against (``tests/test_losses_relational.py``, ``benchmarks/bench_losses.py``).

They are the reference numerics of protocol.md, written the direct way: RKD-D from a
Gram-matrix pairwise distance, RKD-A from the N x N x D tensor of difference vectors,
``F.normalize`` and a batched product (O(N^2 D) memory, O(N^3 D) time). Use
:func:`rkd.losses.rkd_distance` and :func:`rkd.losses.rkd_angle` for training.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["authors_pdist", "authors_rkd_distance", "authors_rkd_angle"]


def authors_pdist(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Pairwise Euclidean distances from the Gram matrix, squared values clamped at
    ``eps``, diagonal set to zero."""
    squared_norms = e.pow(2).sum(dim=1)
    squared = squared_norms.unsqueeze(1) + squared_norms.unsqueeze(0) - 2 * e @ e.t()
    res = squared.clamp(min=eps).sqrt()  # portable-numerics: ok (a reference form, only in tests and benchmarks)
    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def authors_rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-D (eqs. 5-8): distances over their mean over d > 0, smooth-L1 over N^2 entries."""
    with torch.no_grad():
        t_d = authors_pdist(teacher)
        t_d = t_d / t_d[t_d > 0].mean()
    d = authors_pdist(student)
    d = d / d[d > 0].mean()
    return F.smooth_l1_loss(d, t_d)


def authors_rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-A (eqs. 9-10): N x N x D differences, ``F.normalize``, ``bmm``, smooth-L1 over N^3."""
    with torch.no_grad():
        td = teacher.unsqueeze(0) - teacher.unsqueeze(1)
        norm_td = F.normalize(td, p=2, dim=2)
        t_angle = torch.bmm(norm_td, norm_td.transpose(1, 2)).view(-1)
    sd = student.unsqueeze(0) - student.unsqueeze(1)
    norm_sd = F.normalize(sd, p=2, dim=2)
    s_angle = torch.bmm(norm_sd, norm_sd.transpose(1, 2)).view(-1)
    return F.smooth_l1_loss(s_angle, t_angle)
