"""Evaluation metrics: Recall@K for retrieval, top-1 accuracy, few-shot accuracy with CI95.

Recall@K follows the paper's protocol (section 4.1): every test embedding is a query
against all the others, itself excluded; a query scores a hit at K when any of its K
nearest neighbours (Euclidean distance) shares its label.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
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
    matters.

    How. A query's K nearest neighbours hold a same-label item exactly when fewer than K
    other-label items are closer than its nearest same-label item. So no neighbour lists
    are kept: the rows are grouped by label, the squared distances
    ``|a|^2 + |b|^2 - 2 a.b`` (in the embeddings' dtype: pass float64 for an exact
    computation) are computed one ``chunk_size`` x ``chunk_size`` block at a time, and
    only on and above the diagonal (the matrix is symmetric: a block's rows serve its
    row queries and its columns its column queries, which halves the matrix products of
    an exact search such as faiss's). The blocks that hold same-label pairs (those on the
    diagonal, blocks being cut at class boundaries) give each query its nearest
    same-label distance; every other block only counts, per query, the items closer than
    that. On the CPU the block products and the counting go through NumPy (OpenBLAS),
    which is faster than torch's CPU kernels for both on the machines measured
    (benchmarks/bench_recall.py). Extra memory: two label-sorted copies of the
    embeddings, extended by two columns, and one block with its mask; by default the block
    is sized to stay under ``max_chunk_bytes`` (256 MiB) and is at most 2048 wide.

    An other-label item at exactly the distance of the nearest same-label item does not
    count as closer: exact ties go to the hit.
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
    # float32 or float64 (half precisions have no BLAS product on the CPU, nor the range)
    x = embeddings if embeddings.dtype in (torch.float32, torch.float64) else embeddings.float()
    if chunk_size is None:
        # a block of distances, two boolean masks and a masked copy on the diagonal
        per_entry = 2 * x.element_size() + 2
        chunk_size = max(1, min(n, _BLOCK_LIMIT, math.isqrt(max_chunk_bytes // per_entry)))
    closer = _other_label_items_closer(x, labels_t.to(x.device), int(chunk_size))
    return {k: 100.0 * (closer < k).sum().item() / n for k in ks}


#: the widest block: wider ones add memory and, on CPUs, cache misses; the matrix
#: product is as fast at 2048
_BLOCK_LIMIT = 2048


def _class_blocks(sorted_labels: torch.Tensor, block: int) -> list[tuple[int, int, int | None]]:
    """Cut label-sorted rows into ``(start, stop, class)`` blocks of at most ``block``
    rows that never split a class, except a class larger than a block, which gets blocks
    of its own marked with its position in the class order (``class`` is None for a
    block of whole classes)."""
    _, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    blocks: list[tuple[int, int, int | None]] = []
    start = stop = 0
    for class_index, count in enumerate(counts.tolist()):
        if count > block:
            if stop > start:
                blocks.append((start, stop, None))
            blocks += [(a, min(a + block, stop + count), class_index) for a in range(stop, stop + count, block)]
            start = stop = stop + count
            continue
        if stop + count - start > block:
            blocks.append((start, stop, None))
            start = stop
        stop += count
    if stop > start:
        blocks.append((start, stop, None))
    return blocks


class _BlockDistances:
    """Squared distances between blocks of rows, ``|a|^2 + |b|^2 - 2 a.b``, as one
    matrix product per block: the rows are extended to ``[-2a, |a|^2, 1]`` and
    ``[b, 1, |b|^2]``, so no pass over the block is needed to add the norms.

    On the CPU the products go through NumPy's BLAS (OpenBLAS in NumPy's wheels), which
    computes them 2-2.5x faster than torch's MKL on AMD CPUs (measured on an EPYC: 80
    against 31 GFLOP/s) and as fast elsewhere; into one reused output buffer."""

    def __init__(self, x: torch.Tensor, order: torch.Tensor):
        """The rows of ``x`` in ``order``; built a slice at a time, so the two extended
        copies are the only full-size allocations."""
        n, dim = x.shape
        self.left = torch.empty((n, dim + 2), dtype=x.dtype, device=x.device)
        self.right = torch.empty((n, dim + 2), dtype=x.dtype, device=x.device)
        for start in range(0, n, 4096):
            part = x[order[start:start + 4096]]
            squared = (part * part).sum(dim=1)
            self.left[start:start + 4096, :dim] = -2.0 * part
            self.left[start:start + 4096, dim] = squared
            self.left[start:start + 4096, dim + 1] = 1.0
            self.right[start:start + 4096, :dim] = part
            self.right[start:start + 4096, dim] = 1.0
            self.right[start:start + 4096, dim + 1] = squared
        self.on_cpu = x.device.type == "cpu"
        if self.on_cpu:
            self._left, self._right = self.left.numpy(), self.right.numpy()
            self._buffer = None

    def __call__(self, rows: slice, cols: slice) -> torch.Tensor:
        if not self.on_cpu:
            return self.left[rows] @ self.right[cols].T
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        if self._buffer is None or self._buffer.size < shape[0] * shape[1]:
            self._buffer = np.empty(shape[0] * shape[1], dtype=self._left.dtype)
        out = self._buffer[: shape[0] * shape[1]].reshape(shape)
        np.matmul(self._left[rows], self._right[cols].T, out=out)
        return torch.from_numpy(out)


def _other_label_items_closer(x: torch.Tensor, labels: torch.Tensor, block: int) -> torch.Tensor:
    """For each row: how many rows of another label are strictly closer than its
    nearest same-label row (all N - 1 when it has none)."""
    n = x.shape[0]
    order = torch.argsort(labels, stable=True)
    ls = labels[order]
    distances = _BlockDistances(x, order)
    blocks = _class_blocks(ls, block)
    nearest_same = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
    closer = torch.zeros(n, dtype=torch.long, device=x.device)

    mask_buffer = np.empty(0, dtype=bool)

    def count_below(d: torch.Tensor, threshold: torch.Tensor, dim: int) -> torch.Tensor:
        """Entries of ``d`` below ``threshold`` along ``dim``. On the CPU through NumPy,
        into one reused mask: its single-threaded compare and sum run 2-3x faster than
        torch's two OpenMP threads on a shared 2-core machine (and no block-sized
        allocation per call)."""
        nonlocal mask_buffer
        if d.device.type != "cpu":
            return (d < threshold).sum(dim)
        if mask_buffer.size < d.numel():
            mask_buffer = np.empty(d.numel(), dtype=bool)
        mask = mask_buffer[: d.numel()].reshape(d.shape)
        np.less(d.numpy(), threshold.numpy(), out=mask)
        return torch.from_numpy(mask.sum(axis=dim, dtype=np.int32))

    # same-label pairs: within the blocks of whole classes, and among the blocks of one large class
    for i, (a0, a1, large) in enumerate(blocks):
        rows = slice(a0, a1)
        if large is None:
            d = distances(rows, rows)
            d.fill_diagonal_(math.inf)
            same = ls[rows, None] == ls[None, rows]
            nearest_same[rows] = torch.where(same, d, math.inf).min(dim=1).values
            closer[rows] += ((d < nearest_same[rows, None]) & ~same).view(torch.uint8).sum(1, dtype=torch.int32)
            continue
        for b0, b1, other_large in blocks[i:]:
            if other_large != large:
                break
            cols = slice(b0, b1)
            d = distances(rows, cols)
            if b0 == a0:
                d.fill_diagonal_(math.inf)
            nearest_same[rows] = torch.minimum(nearest_same[rows], d.min(dim=1).values)
            nearest_same[cols] = torch.minimum(nearest_same[cols], d.min(dim=0).values)
    # pairs of blocks that share no class: every pair is of different labels
    for i, (a0, a1, large) in enumerate(blocks):
        rows = slice(a0, a1)
        for b0, b1, other_large in blocks[i + 1:]:
            if large is not None and other_large == large:
                continue
            cols = slice(b0, b1)
            d = distances(rows, cols)
            closer[rows] += count_below(d, nearest_same[rows, None], 1)
            closer[cols] += count_below(d, nearest_same[None, cols], 0)
    result = torch.empty_like(closer)
    result[order] = closer
    return result


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
