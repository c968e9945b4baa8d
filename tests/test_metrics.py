import subprocess
import sys
import textwrap

import pytest
import torch

from rkd.metrics import accuracy, mean_confidence_interval, recall_at_k


def slow_recall_at_k(embeddings, labels, ks):
    """Direct transcription of the protocol, in float64: for each query, sort the
    others by Euclidean distance and look for a same-label item among the first K."""
    x = embeddings.double()
    n = x.shape[0]
    hits = {k: 0 for k in ks}
    for q in range(n):
        others = [j for j in range(n) if j != q]
        dists = [(torch.linalg.norm(x[q] - x[j]).item(), j) for j in others]
        ranked = [j for _, j in sorted(dists)]
        for k in ks:
            if any(labels[j] == labels[q] for j in ranked[:k]):
                hits[k] += 1
    return {k: 100.0 * hits[k] / n for k in ks}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recall_matches_direct_float64_computation(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(120, 7, generator=g).to(dtype)
    labels = torch.randint(0, 9, (120,), generator=g)
    ks = (1, 2, 4, 8)
    assert recall_at_k(x, labels, ks) == slow_recall_at_k(x, labels.tolist(), ks)


def test_recall_is_independent_of_chunking():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(203, 16, generator=g)
    labels = torch.randint(0, 20, (203,), generator=g)
    whole = recall_at_k(x, labels, chunk_size=203)
    # 3: every class (about 10 rows) is larger than a block and spans several blocks
    for chunk in (3, 7, 64):
        assert recall_at_k(x, labels, chunk_size=chunk) == whole


@pytest.mark.parametrize("chunk_size", [4, 16, None])
def test_recall_with_a_large_class_and_singletons_matches_the_direct_computation(chunk_size):
    """A class much larger than a block, classes of one item (never a hit) and classes
    of two, in no particular order."""
    g = torch.Generator().manual_seed(4)
    labels = torch.tensor([0] * 40 + [1, 2, 3] + [4, 4, 5, 5, 6, 6] + [7] * 11)
    labels = labels[torch.randperm(len(labels), generator=g)]
    x = torch.randn(len(labels), 5, generator=g, dtype=torch.float64)
    ks = (1, 2, 4, 8, 16)
    assert recall_at_k(x, labels, ks, chunk_size=chunk_size) == slow_recall_at_k(x, labels.tolist(), ks)


def test_query_itself_is_excluded():
    # every point's only same-label partner is far away: Recall@1 must be 0, not 100
    x = torch.tensor([[0.0], [10.0], [0.1], [10.1]])
    labels = torch.tensor([0, 0, 1, 1])
    assert recall_at_k(x, labels, ks=(1,)) == {1: 0.0}
    assert recall_at_k(x, labels, ks=(3,)) == {3: 100.0}


def test_any_label_values():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 4, generator=g)
    ints = torch.randint(0, 5, (50,), generator=g)
    names = [f"class-{i}" for i in ints.tolist()]
    floats = ints.double() * 0.5 - 7
    expected = recall_at_k(x, ints)
    assert recall_at_k(x, names) == expected
    assert recall_at_k(x, floats) == expected
    assert recall_at_k(x, ints.tolist()) == expected


def test_recall_errors_are_clear():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="larger than the number of other embeddings"):
        recall_at_k(x, torch.arange(5), ks=(8,))
    with pytest.raises(ValueError, match="one label per embedding"):
        recall_at_k(x, torch.arange(4))
    with pytest.raises(ValueError, match="2-D"):
        recall_at_k(torch.randn(5), torch.arange(5))
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        recall_at_k(bad, torch.arange(5), ks=(1,))


@pytest.mark.slow
def test_recall_on_40000_x_128_stays_under_1GB_extra_memory():
    # run in a fresh process so the peak RSS belongs to this computation alone
    script = textwrap.dedent(
        """
        import resource, torch
        from rkd.metrics import recall_at_k
        torch.set_num_threads(2)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(40000, 128, generator=g)
        labels = torch.randint(0, 1000, (40000,), generator=g)
        recall_at_k(x[:100], labels[:100])  # warm up the allocator and kernels
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        r = recall_at_k(x, labels)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) * 1024, r[1])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    extra_bytes, r1 = out.stdout.split()
    assert int(extra_bytes) < 2**30, f"recall_at_k used {int(extra_bytes) / 2**20:.0f} MiB extra"
    assert 0.0 <= float(r1) <= 100.0


def test_accuracy_and_confidence_interval():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 1])) == 75.0
    mean, half = mean_confidence_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert half == pytest.approx(1.96 * (5 / 3) ** 0.5 / 2)
    with pytest.raises(ValueError):
        mean_confidence_interval([1.0])
