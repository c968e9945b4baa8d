"""Evaluation metrics: Recall@K for retrieval, top-1 accuracy, few-shot accuracy with CI95.

Recall@K follows the paper's protocol (section 4.1): every test embedding is a query
against all the others, itself excluded; a query scores a hit at K when any of its K
nearest neighbours (Euclidean distance) shares its label.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

__all__ = ["recall_at_k", "accuracy", "mean_confidence_interval"]


def _check_embeddings(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"embeddings must be a 2-D tensor [N, D], got {shape}")
    if labels.dim() != 1 or labels.numel() != embeddings.shape[0]:
        raise ValueError(
            f"labels must be a 1-D tensor with one label per embedding: "
            f"got {tuple(labels.shape)} labels for {embeddings.shape[0]} embeddings"
        )
    if embeddings.shape[0] < 2:
        raise ValueError("recall_at_k needs at least 2 embeddings: each query is compared with the others")
    if not torch.isfinite(embeddings).all():
        raise ValueError("embeddings contain NaN or inf; check the model's outputs before evaluating")


@torch.no_grad()
def recall_at_k(
    embeddings: torch.Tensor,
    labels: torch.Tensor | Sequence,
    ks: Iterable[int] = (1, 2, 4, 8),
    chunk_size: int | None = None,
    max_chunk_bytes: int = 256 * 2**20,
) -> dict[int, float]:
    """Recall@K in percent for each K in ``ks``.

    Each of the N embeddings is a query against the N - 1 others (itself excluded);
    distances are Euclidean. Labels may be any values (ints, strings): only equality
    matters. Queries are processed in chunks so the extra memory is
    O(chunk_size * N) rather than O(N^2): by default the chunk is sized so one
    chunk's distance matrix stays under ``max_chunk_bytes`` (256 MiB), which keeps
    40,000 x 128 float32 embeddings well under 1 GB of extra memory.

    Ranking uses squared distances (they order neighbours as distances do), expanded
    as ``|q|^2 - 2 q.x + |x|^2`` in the embeddings' dtype: pass float64 embeddings
    for an exact computation. Exact ties between distances are resolved by
    ``torch.topk``, deterministically for a given input.
    """
    labels_t = _labels_to_tensor(labels)
    embeddings = torch.as_tensor(embeddings)
    _check_embeddings(embeddings, labels_t)
    ks = sorted({int(k) for k in ks})
    n = embeddings.shape[0]
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if ks[-1] > n - 1:
        raise ValueError(f"K={ks[-1]} is larger than the number of other embeddings ({n - 1}); lower ks")
    labels_t = labels_t.to(embeddings.device)
    x = embeddings
    if not x.is_floating_point():
        x = x.float()
    k_max = ks[-1]
    if chunk_size is None:
        # the distance row and its temporaries (about three copies of it)
        per_row = 3 * n * x.element_size()
        chunk_size = max(1, min(n, max_chunk_bytes // per_row))
    sq_norms = (x * x).sum(dim=1)
    hits = torch.zeros(len(ks), dtype=torch.long, device=x.device)
    arange = torch.arange(n, device=x.device)
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        q = x[start:stop]
        d = sq_norms[start:stop, None] - 2.0 * (q @ x.T) + sq_norms[None, :]
        d[torch.arange(stop - start, device=x.device), arange[start:stop]] = float("inf")
        nn_idx = torch.topk(d, k_max, dim=1, largest=False, sorted=True).indices
        match = labels_t[nn_idx] == labels_t[start:stop, None]
        first_hit = torch.where(match.any(dim=1), match.float().argmax(dim=1), torch.full_like(nn_idx[:, 0], k_max))
        for i, k in enumerate(ks):
            hits[i] += (first_hit < k).sum()
    return {k: 100.0 * hits[i].item() / n for i, k in enumerate(ks)}


def _labels_to_tensor(labels) -> torch.Tensor:
    """Map any label values to contiguous int64 codes (only equality matters)."""
    if isinstance(labels, torch.Tensor):
        if labels.is_floating_point() or labels.is_complex():
            _, codes = torch.unique(labels, return_inverse=True)
            return codes.reshape(-1)
        return labels.reshape(-1).long()
    values = list(labels)
    codes: dict = {}
    return torch.tensor([codes.setdefault(v, len(codes)) for v in values], dtype=torch.long)


@torch.no_grad()
def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    if logits.dim() != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"logits must be [N, C] with N labels; got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


def mean_confidence_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% confidence half-width (1.96 standard errors), as few-shot papers report."""
    t = torch.as_tensor(list(values), dtype=torch.float64)
    if t.numel() < 2:
        raise ValueError("a confidence interval needs at least 2 values")
    mean = t.mean().item()
    half = 1.96 * t.std(unbiased=True).item() / math.sqrt(t.numel())
    return mean, half
