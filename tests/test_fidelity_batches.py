"""MPerClassSampler's authors'-code batches against a transcription of the authors' NPairs
sampler (``lenscloth/RKD``, ``metric/batchsampler.py``).

The two draw from different random sources (Python's ``random`` there, a NumPy generator
seeded per epoch here), so they are compared by the shape of their batches, which is
what the protocol fixes: how many images of how many classes.
"""
from __future__ import annotations

import random
from collections import Counter

import numpy as np

from rkd.data import MPerClassSampler


def authors_npairs(labels: np.ndarray, batch_size: int, m: int, batches: int, seed: int) -> list[list[int]]:
    """NPairs.__iter__: a random order of all classes; from each, min(m, its size) random
    images; stop once the batch is full and cut it at batch_size."""
    rng = random.Random(seed)
    images_by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        images_by_class.setdefault(label, []).append(index)
    class_ids = list(images_by_class)
    out = []
    for _ in range(batches):
        example_indices: list[int] = []
        for c in rng.sample(class_ids, k=len(class_ids)):
            example_indices += rng.sample(images_by_class[c], k=min(m, len(images_by_class[c])))
            if len(example_indices) >= batch_size:
                break
        out.append(example_indices[:batch_size])
    return out


def shape(batch: list[int], labels: np.ndarray) -> list[int]:
    """Images per class, in the order the classes appear in the batch."""
    return list(Counter(labels[batch].tolist()).values())


def check_walk(batch: list[int], labels: np.ndarray, m: int) -> None:
    """Every class but the last gives min(m, its size) images; the last at most that."""
    sizes = Counter(labels.tolist())
    per_class = Counter(labels[batch].tolist())
    order = list(dict.fromkeys(labels[batch].tolist()))
    for c in order[:-1]:
        assert per_class[c] == min(m, sizes[c])
    assert 1 <= per_class[order[-1]] <= min(m, sizes[order[-1]])


def test_128_is_25_classes_of_5_and_3_of_a_26th_like_npairs():
    labels = np.repeat(np.arange(100), 30)  # CUB/Cars-like: every class has far more than 5 images
    ours = MPerClassSampler(labels, m=5, batch_size=128, batches_per_epoch=50, seed=0, fill_with_partial_class=True)
    theirs = authors_npairs(labels, batch_size=128, m=5, batches=50, seed=0)
    for batch in [*ours, *theirs]:
        assert len(batch) == 128 and len(set(batch)) == 128
        assert shape(batch, labels) == [5] * 25 + [3]


def test_small_classes_walk_like_npairs():
    """SOP-like class sizes (many classes of 2-4 images): with small_classes='take_all'
    the batches follow the same walk, and hold as many classes on average."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(400), rng.integers(2, 9, size=400))
    ours = list(MPerClassSampler(labels, m=5, batch_size=128, batches_per_epoch=200, seed=0,
                                 small_classes="take_all", fill_with_partial_class=True))
    theirs = authors_npairs(labels, batch_size=128, m=5, batches=200, seed=0)
    for batch in [*ours, *theirs]:
        assert len(batch) == 128 and len(set(batch)) == 128
        check_walk(batch, labels, 5)
    mean_classes = [np.mean([len(shape(b, labels)) for b in batches]) for batches in (ours, theirs)]
    assert abs(mean_classes[0] - mean_classes[1]) < 0.5, mean_classes
    assert mean_classes[0] > 27  # more than 26: the small classes give fewer than 5 images
