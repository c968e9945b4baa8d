"""Evaluating a trained model on a test split: embed it once, then score the embeddings
(Recall@K for retrieval, top-1 for classification, prototypical accuracy on seeded
episodes for few-shot). Every evaluator uses the model in eval mode, without gradients,
and reports the model as it is: no selection of any kind happens here.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .data.samplers import EpisodeSampler
from .metrics import accuracy, mean_confidence_interval, recall_at_k

__all__ = ["embed", "recall", "top1", "episode_accuracies", "fewshot_accuracy", "nearest_neighbours", "head_to_head",
           "EPISODE_CHUNK"]


@torch.no_grad()
def embed(model: torch.nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
          output: str = "embedding") -> tuple[torch.Tensor, torch.Tensor]:
    """``model(x)[output]`` for every image of ``dataset`` in order, and the labels; on the CPU."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    outputs, labels = [], []
    try:
        for images, targets in loader:
            outputs.append(model(images.to(device))[output].float().cpu())
            labels.append(torch.as_tensor(targets))
    finally:
        model.train(was_training)
    return torch.cat(outputs), torch.cat(labels)


def recall(model: torch.nn.Module, dataset: Dataset, *, ks: tuple[int, ...], batch_size: int,
           device: torch.device) -> dict[str, float]:
    """Recall@K (%) over ``dataset``, each image a query against all others."""
    embeddings, labels = embed(model, dataset, batch_size, device)
    return {f"recall_at_{k}": value for k, value in recall_at_k(embeddings, labels, ks).items()}


def top1(model: torch.nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device) -> dict[str, float]:
    """Top-1 accuracy (%) of ``model(x)["logits"]`` over ``dataset``."""
    logits, labels = embed(model, dataset, batch_size, device, output="logits")
    return {"top1": accuracy(logits, labels)}


#: test episodes evaluated at once by :func:`episode_accuracies`
EPISODE_CHUNK = 50


@torch.no_grad()
def episode_accuracies(embeddings: torch.Tensor, labels: torch.Tensor, *, n_way: int, k_shot: int, n_query: int,
                       episodes: int, seed: int) -> torch.Tensor:
    """Accuracy (%) of the prototypical classifier on each of ``episodes`` seeded
    ``n_way``-way ``k_shot``-shot episodes with ``n_query`` queries per class, drawn
    from precomputed ``embeddings`` [N, D] of images with ``labels`` [N].

    A query goes to the nearest class mean of the support embeddings (squared
    Euclidean distance), as in Snell et al. Float64, in chunks of :data:`EPISODE_CHUNK`
    episodes (1,000 20-way 5-shot episodes of 1,600-d embeddings would otherwise
    gather gigabytes at once)."""
    sampler = EpisodeSampler(labels, n_way, k_shot, n_query, episodes=episodes, seed=seed)
    index = torch.tensor(list(sampler), dtype=torch.long)  # [E, n_way * (k + q)], class-major
    truth = torch.arange(n_way).repeat_interleave(n_query)
    values = []
    for chunk in index.split(EPISODE_CHUNK):
        grouped = embeddings[chunk].view(len(chunk), n_way, k_shot + n_query, -1).double()
        prototypes = grouped[:, :, :k_shot].mean(dim=2)  # [e, n_way, D]
        queries = grouped[:, :, k_shot:].reshape(len(chunk), n_way * n_query, -1)
        # squared distances from the Gram form: the ranking needs no square root
        squared = ((queries * queries).sum(-1, keepdim=True) - 2.0 * queries @ prototypes.transpose(1, 2)
                   + (prototypes * prototypes).sum(-1).unsqueeze(1))
        predicted = squared.argmin(dim=2)  # [e, n_way * q]
        values.append(100.0 * (predicted == truth).double().mean(dim=1))
    return torch.cat(values)


def fewshot_accuracy(model: torch.nn.Module, dataset: Dataset, *, ways: tuple[int, ...], shot: int, query: int,
                     episodes: int, seed: int, batch_size: int, device: torch.device) -> list[dict[str, Any]]:
    """One dict per way: way, shot, accuracy (mean over episodes), ci95 (1.96 standard
    errors), episodes, and ``episode_accuracies`` (a list, in episode order, for paired
    comparisons between models tested on the same episodes)."""
    embeddings, labels = embed(model, dataset, batch_size, device)
    rows = []
    for way in ways:
        values = episode_accuracies(embeddings, labels, n_way=way, k_shot=shot, n_query=query, episodes=episodes,
                                    seed=seed)
        mean, half_width = mean_confidence_interval(values.tolist())
        rows.append({"way": way, "shot": shot, "accuracy": mean, "ci95": half_width, "episodes": episodes,
                     "episode_accuracies": values.tolist()})
    return rows


@torch.no_grad()
def nearest_neighbours(embeddings: torch.Tensor, k: int, queries: torch.Tensor | None = None,
                       chunk_size: int = 1024) -> torch.Tensor:
    """Indices ``[Q, k]`` of the ``k`` nearest neighbours (Euclidean) of each query among
    all ``embeddings``, the query itself excluded, nearest first: the ranking Recall@K
    scores. ``queries``: indices into ``embeddings`` (all of them when None). Ties are
    broken by ``torch.topk``, deterministically."""
    x = embeddings.float()
    n = x.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and {n - 1} (the other embeddings), got {k}")
    queries = torch.arange(n) if queries is None else torch.as_tensor(queries, dtype=torch.long)
    sq_norms = (x * x).sum(dim=1)
    found = []
    for start in range(0, len(queries), chunk_size):
        chunk = queries[start:start + chunk_size]
        d = sq_norms[chunk, None] - 2.0 * (x[chunk] @ x.T) + sq_norms[None, :]
        d[torch.arange(len(chunk)), chunk] = float("inf")
        found.append(torch.topk(d, k, dim=1, largest=False, sorted=True).indices)
    return torch.cat(found) if found else torch.empty(0, k, dtype=torch.long)


def head_to_head(student: torch.nn.Module, teacher: torch.nn.Module, dataset: Dataset, *, k: int, batch_size: int,
                 device: torch.device) -> dict[str, float]:
    """Per test query, the correct images among the ``k`` nearest of the student and of the
    teacher: the share (%) of queries where the student's top ``k`` holds more of them
    (``queries_student_ahead``) and where the teacher's does (``queries_teacher_ahead``)."""
    hits = {}
    for name, model in (("student", student), ("teacher", teacher)):
        embeddings, labels = embed(model, dataset, batch_size, device)
        neighbours = nearest_neighbours(embeddings, k)
        hits[name] = (labels[neighbours] == labels[:, None]).sum(dim=1)
    return {"queries_student_ahead": 100.0 * float((hits["student"] > hits["teacher"]).double().mean()),
            "queries_teacher_ahead": 100.0 * float((hits["teacher"] > hits["student"]).double().mean())}
