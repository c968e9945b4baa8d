"""RandomBatchSampler: one seeded permutation per epoch, cut into batches; resumable."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rkd.data.samplers import RandomBatchSampler


def test_an_epoch_is_a_permutation_cut_into_batches():
    sampler = RandomBatchSampler(103, batch_size=10, seed=3, drop_last=False)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 11
    assert [len(b) for b in batches] == [10] * 10 + [3]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(103))  # every index exactly once
    assert flat != list(range(103))  # shuffled
    assert flat == np.random.default_rng([3, 0]).permutation(103).tolist()


def test_drop_last_leaves_out_the_remainder_of_the_permutation():
    sampler = RandomBatchSampler(103, batch_size=10, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10
    assert all(len(b) == 10 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == 100
    assert flat == np.random.default_rng([3, 0]).permutation(103)[:100].tolist()


def test_same_seed_same_batches_and_epochs_differ():
    a, b = RandomBatchSampler(50, 8, seed=1), RandomBatchSampler(50, 8, seed=1)
    first_a, first_b = list(a), list(b)
    assert first_a == first_b
    second = list(a)  # a full pass advanced the epoch
    assert a.epoch == 2 and second != first_a
    a.set_epoch(0)
    assert list(a) == first_a
    assert list(RandomBatchSampler(50, 8, seed=2)) != first_a


def test_state_round_trip_resumes_mid_epoch_identically():
    reference = RandomBatchSampler(64, 8, seed=5)
    reference.set_epoch(4)
    expected = list(reference)
    killed = RandomBatchSampler(64, 8, seed=5)
    killed.set_epoch(4)
    iterator = iter(killed)
    seen = [next(iterator) for _ in range(3)]
    state = killed.state_dict()
    assert state == {"seed": 5, "epoch": 4, "position": 3}
    resumed = RandomBatchSampler(64, 8, seed=0)
    resumed.load_state_dict(state)
    assert seen + list(resumed) == expected
    assert resumed.state_dict() == {"seed": 5, "epoch": 5, "position": 0}


def test_works_as_a_dataloader_batch_sampler():
    data = TensorDataset(torch.arange(30).float(), torch.arange(30))
    loader = DataLoader(data, batch_sampler=RandomBatchSampler(30, 7, seed=0))
    batches = [y.tolist() for _, y in loader]
    assert len(batches) == 4 and all(len(b) == 7 for b in batches)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_items": 0, "batch_size": 4}, ValueError, "num_items"),
        ({"num_items": 10, "batch_size": 0}, ValueError, "batch_size"),
        ({"num_items": 10, "batch_size": 4, "seed": -1}, ValueError, "seed"),
        ({"num_items": 10, "batch_size": 4, "drop_last": 1}, TypeError, "drop_last"),
        ({"num_items": 3, "batch_size": 4}, ValueError, "drop_last=False"),
    ],
)
def test_parameter_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        RandomBatchSampler(**kwargs)


def test_fewer_items_than_a_batch_is_one_short_batch_without_drop_last():
    assert list(RandomBatchSampler(3, 4, seed=0, drop_last=False)) == [
        np.random.default_rng([0, 0]).permutation(3).tolist()
    ]
