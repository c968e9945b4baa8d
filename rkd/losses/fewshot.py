"""Prototypical networks loss (Snell, Swersky & Zemel, 2017) for few-shot episodes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["prototypes", "prototypical_logits", "prototypical_loss", "split_episode"]


def _check_episode(support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor) -> None:
    if support.dim() != 2 or query.dim() != 2 or support.shape[1] != query.shape[1]:
        raise ValueError(
            f"support and query must be [n, D] embeddings of one D, got {tuple(support.shape)} "
            f"and {tuple(query.shape)}"
        )
    if support_labels.shape != (support.shape[0],) or query_labels.shape != (query.shape[0],):
        raise ValueError("support_labels / query_labels must be 1-D with one label per embedding")


def prototypes(support: Tensor, support_labels: Tensor) -> tuple[Tensor, Tensor]:
    """Class means of the support embeddings: returns (classes [K], prototypes [K, D]),
    classes sorted."""
    classes, index = torch.unique(support_labels, sorted=True, return_inverse=True)
    sums = support.new_zeros(classes.shape[0], support.shape[1]).index_add_(0, index, support)
    counts = torch.bincount(index, minlength=classes.shape[0]).to(support.dtype)
    return classes, sums / counts.unsqueeze(1)


def prototypical_logits(support: Tensor, support_labels: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """Logits ``-||q - c_k||^2`` of every query against every class prototype c_k.
    Returns (classes [K], logits [n_query, K])."""
    classes, centres = prototypes(support, support_labels)
    logits = -(query.unsqueeze(1) - centres.unsqueeze(0)).pow(2).sum(dim=2)
    return classes, logits


def _query_targets(classes: Tensor, query_labels: Tensor) -> Tensor:
    position = torch.searchsorted(classes.contiguous(), query_labels.contiguous())
    position = position.clamp_max(classes.shape[0] - 1)
    if not torch.equal(classes[position], query_labels):
        raise ValueError("every query label must appear among the support labels")
    return position


def prototypical_loss(support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor) -> Tensor:
    """Prototypical loss: cross-entropy of the queries over the softmax of the negative
    squared Euclidean distances to the class prototypes (the support class means), mean
    over the queries (Snell et al. 2017, eq. 1-2)."""
    _check_episode(support, support_labels, query, query_labels)
    classes, logits = prototypical_logits(support, support_labels, query)
    return F.cross_entropy(logits, _query_targets(classes, query_labels))


def split_episode(embeddings: Tensor, labels: Tensor, n_way: int, k_shot: int, n_query: int):
    """Split a class-major episode batch into (support, support_labels, query, query_labels).

    Batch order (what an episode sampler must produce): ``n_way`` blocks of
    ``k_shot + n_query`` consecutive examples, one block per class; inside a block the
    first ``k_shot`` are the support, the last ``n_query`` the queries. This is the layout
    of Snell et al.'s code (``x.view(n_way, k_shot + n_query, ...)``). Each block must hold a
    single label, different from the other blocks'.
    """
    per_class = k_shot + n_query
    if min(n_way, k_shot, n_query) < 1:
        raise ValueError(f"episode needs n_way, k_shot, n_query >= 1, got ({n_way}, {k_shot}, {n_query})")
    if embeddings.shape[0] != n_way * per_class or labels.shape != (embeddings.shape[0],):
        raise ValueError(
            f"an episode of {n_way}-way {k_shot}-shot with {n_query} queries holds "
            f"{n_way * per_class} examples, got {embeddings.shape[0]} embeddings and labels of shape "
            f"{tuple(labels.shape)}"
        )
    blocks = labels.view(n_way, per_class)
    if not (blocks == blocks[:, :1]).all() or torch.unique(blocks[:, 0]).numel() != n_way:
        raise ValueError(
            "episode batch is not class-major: expected n_way blocks of k_shot + n_query examples, "
            "one class per block (support first, then queries)"
        )
    grouped = embeddings.view(n_way, per_class, -1)
    support = grouped[:, :k_shot].reshape(n_way * k_shot, -1)
    query = grouped[:, k_shot:].reshape(n_way * n_query, -1)
    return support, blocks[:, :k_shot].reshape(-1), query, blocks[:, k_shot:].reshape(-1)
