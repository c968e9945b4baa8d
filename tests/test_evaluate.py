"""rkd.evaluate: the prototypical episode accuracies against a direct, loop-by-loop
classifier, nearest neighbours against Recall@1, and the evaluators on models whose
answers are known."""
import pytest
import torch

from rkd.data.samplers import EpisodeSampler
from rkd.evaluate import EPISODE_CHUNK, embed, episode_accuracies, fewshot_accuracy, nearest_neighbours, recall, top1
from rkd.metrics import recall_at_k


def direct_prototypical_accuracy(support, support_labels, query, query_labels) -> float:
    """Snell et al.'s classifier written out: each class's prototype is the mean of its
    support embeddings; a query goes to the prototype at the smallest squared Euclidean
    distance. Returns the fraction of queries classified correctly."""
    classes = sorted(set(support_labels.tolist()))
    prototypes = {c: support[support_labels == c].mean(dim=0) for c in classes}
    correct = 0
    for embedding, label in zip(query, query_labels.tolist()):
        distances = {c: float(((embedding - p) ** 2).sum()) for c, p in prototypes.items()}
        correct += min(classes, key=lambda c: distances[c]) == label
    return correct / len(query)


def test_episode_accuracies_match_the_direct_prototypical_classifier_episode_by_episode():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(12)
    embeddings = torch.randn(len(labels), 5, generator=generator) + 0.8 * torch.nn.functional.one_hot(labels % 5, 5)
    episodes = EPISODE_CHUNK + 7  # more than one chunk
    values = episode_accuracies(embeddings, labels, n_way=4, k_shot=2, n_query=3, episodes=episodes, seed=7)
    assert values.shape == (episodes,)
    assert 0 < float(values.min()) < float(values.max()) < 100  # neither trivial nor hopeless
    for value, episode in zip(values, EpisodeSampler(labels, 4, 2, 3, episodes=episodes, seed=7)):
        grouped = torch.tensor(episode).view(4, 5)  # class-major: 2 support, then 3 queries
        support, query = grouped[:, :2].reshape(-1), grouped[:, 2:].reshape(-1)
        expected = direct_prototypical_accuracy(embeddings[support].double(), labels[support],
                                                embeddings[query].double(), labels[query])
        assert value.item() == pytest.approx(100 * expected)
    # seeded: the same episodes again, other ones with another seed
    again = episode_accuracies(embeddings, labels, n_way=4, k_shot=2, n_query=3, episodes=episodes, seed=7)
    other = episode_accuracies(embeddings, labels, n_way=4, k_shot=2, n_query=3, episodes=episodes, seed=8)
    assert torch.equal(values, again) and not torch.equal(values, other)


def test_separated_classes_score_100_and_identical_embeddings_score_one_over_the_ways():
    labels = torch.arange(6).repeat_interleave(10)
    separated = torch.nn.functional.one_hot(labels, 6).float() * 10 + 0.01 * torch.randn(60, 6)
    assert episode_accuracies(separated, labels, n_way=5, k_shot=1, n_query=4, episodes=30, seed=0).min() == 100.0
    # all embeddings equal: every distance ties, argmin picks the first prototype, right for 1 class in 5
    same = torch.zeros(60, 3)
    values = episode_accuracies(same, labels, n_way=5, k_shot=1, n_query=4, episodes=30, seed=0)
    assert torch.allclose(values, torch.full((30,), 20.0, dtype=values.dtype))


def test_nearest_neighbours_exclude_the_query_come_nearest_first_and_agree_with_recall_at_1():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(50, 8, generator=generator)
    labels = torch.randint(0, 5, (50,), generator=generator)
    neighbours = nearest_neighbours(embeddings, 8, chunk_size=7)  # several chunks
    assert neighbours.shape == (50, 8)
    assert not (neighbours == torch.arange(50)[:, None]).any()
    gathered = torch.cdist(embeddings, embeddings).gather(1, neighbours)
    assert (gathered[:, 1:] >= gathered[:, :-1]).all()  # nearest first
    # nobody outside the top 8 is nearer than the 8th
    distances = torch.cdist(embeddings, embeddings).fill_diagonal_(float("inf"))
    assert torch.allclose(distances.sort(dim=1).values[:, :8], gathered)
    r1 = 100.0 * float((labels[neighbours[:, 0]] == labels).float().mean())
    assert r1 == pytest.approx(recall_at_k(embeddings, labels, (1,))[1])
    assert torch.equal(nearest_neighbours(embeddings, 3, queries=[4, 9]), neighbours[[4, 9], :3])
    with pytest.raises(ValueError, match="k must be between 1 and 49"):
        nearest_neighbours(embeddings, 50)


class Lookup(torch.nn.Module):
    """A model whose outputs are known: image i (a 1-element tensor holding i) maps to
    row i of ``table`` as its embedding and to ``logits[i]``."""

    def __init__(self, table, logits):
        super().__init__()
        self.register_buffer("table", table)
        self.register_buffer("logits", logits)

    def forward(self, x):
        index = x.view(-1).long()
        return {"embedding": self.table[index], "logits": self.logits[index]}


class Indices(torch.utils.data.Dataset):
    def __init__(self, targets):
        self.targets = torch.as_tensor(targets)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return torch.tensor([float(i)]), int(self.targets[i])


def test_evaluators_on_a_model_with_known_answers():
    targets = torch.arange(5).repeat_interleave(8)  # 5 classes of 8 images
    separated = torch.nn.functional.one_hot(targets, 5).float() * 10 + 0.01 * torch.randn(40, 5)
    logits = torch.nn.functional.one_hot(targets, 5).float()
    logits[:10] = torch.nn.functional.one_hot((targets[:10] + 1) % 5, 5).float()  # 10 of 40 wrong
    model = Lookup(separated, logits).train()
    dataset = Indices(targets)
    embeddings, labels = embed(model, dataset, batch_size=6, device=torch.device("cpu"))
    assert torch.equal(embeddings, separated) and torch.equal(labels, targets)  # in order, across batches
    assert model.training, "embed must restore the model's mode"
    assert recall(model, dataset, ks=(1, 2), batch_size=6, device=torch.device("cpu")) == {
        "recall_at_1": 100.0, "recall_at_2": 100.0}
    assert top1(model, dataset, batch_size=6, device=torch.device("cpu")) == {"top1": pytest.approx(75.0)}
    found = fewshot_accuracy(model, dataset, ways=(2, 5), shot=1, query=3, episodes=4, seed=0, batch_size=6,
                             device=torch.device("cpu"))
    assert [r["way"] for r in found] == [2, 5]
    for row in found:
        assert row["episode_accuracies"] == [100.0] * 4 and row["accuracy"] == 100.0 and row["episodes"] == 4
