"""MPerClassSampler and EpisodeSampler: batch composition, determinism, resume, errors."""
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rkd.data import EpisodeSampler, MPerClassSampler
from rkd.losses.fewshot import split_episode
from rkd.registry import UnknownNameError

# 12 classes with 6..17 images each, shuffled so indices and labels are not aligned
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(12), np.arange(6, 18)))


def runs_of(batch, labels, run_length):
    """The class of each consecutive block of ``run_length`` indices (all equal within a block)."""
    classes = labels[np.asarray(batch)].reshape(-1, run_length)
    assert (classes == classes[:, :1]).all(), "a block mixes classes"
    return classes[:, 0].tolist()


# ---------------------------------------------------------------- MPerClassSampler

def test_every_batch_has_p_classes_of_m_distinct_images():
    sampler = MPerClassSampler(LABELS, m=5, batch_size=20, batches_per_epoch=30, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 30
    for batch in batches:
        assert len(batch) == 20 and len(set(batch)) == 20  # no image twice
        classes = runs_of(batch, LABELS, 5)
        assert len(set(classes)) == 4  # P = 20 // 5 distinct classes
    # every class gets drawn at some point
    assert {c for b in batches for c in LABELS[b]} == set(range(12))


def test_accepts_tensor_labels_and_default_length():
    sampler = MPerClassSampler(torch.as_tensor(LABELS), m=3, batch_size=9)
    assert len(sampler) == len(LABELS) // 9
    assert all(len(b) == 9 for b in sampler)


def test_same_seed_and_epoch_give_the_same_batches():
    first = list(MPerClassSampler(LABELS, m=2, batch_size=8, batches_per_epoch=5, seed=3))
    second = list(MPerClassSampler(LABELS, m=2, batch_size=8, batches_per_epoch=5, seed=3))
    other_seed = list(MPerClassSampler(LABELS, m=2, batch_size=8, batches_per_epoch=5, seed=4))
    assert first == second and first != other_seed


def test_epochs_differ_and_set_epoch_replays_one():
    sampler = MPerClassSampler(LABELS, m=2, batch_size=8, batches_per_epoch=5, seed=3)
    epoch0, epoch1 = list(sampler), list(sampler)  # a full pass advances the epoch
    assert epoch0 != epoch1 and sampler.epoch == 2
    sampler.set_epoch(1)
    assert list(sampler) == epoch1
    sampler.set_epoch(0)
    assert list(sampler) == epoch0


def test_state_round_trip_resumes_mid_epoch_identically():
    reference = MPerClassSampler(LABELS, m=2, batch_size=8, batches_per_epoch=6, seed=5)
    reference.set_epoch(2)
    expected = list(reference) + list(reference)  # epochs 2 and 3

    killed = MPerClassSampler(LABELS, m=2, batch_size=8, batches_per_epoch=6, seed=5)
    killed.set_epoch(2)
    iterator = iter(killed)
    consumed = [next(iterator) for _ in range(4)]
    state = killed.state_dict()
    assert state == {"seed": 5, "epoch": 2, "position": 4}

    resumed = MPerClassSampler(LABELS, m=2, batch_size=8, batches_per_epoch=6, seed=0)
    resumed.load_state_dict(state)
    assert consumed + list(resumed) + list(resumed) == expected


def test_works_as_a_dataloader_batch_sampler():
    dataset = TensorDataset(torch.arange(len(LABELS)), torch.as_tensor(LABELS))
    sampler = MPerClassSampler(LABELS, m=4, batch_size=12, batches_per_epoch=3)
    loader = DataLoader(dataset, batch_sampler=sampler)
    assert len(loader) == 3
    for (indices, labels), batch in zip(loader, MPerClassSampler(LABELS, m=4, batch_size=12, batches_per_epoch=3)):
        assert indices.tolist() == batch
        assert torch.equal(labels, torch.as_tensor(LABELS[batch]))


SMALL = np.array([0] * 5 + [1] * 5 + [2] * 2 + [3] * 5 + [4] * 1)


def test_small_class_error_names_the_classes_and_counts():
    with pytest.raises(ValueError, match=r"class 2: 2 images, class 4: 1 images.*small_classes="):
        MPerClassSampler(SMALL, m=3, batch_size=6)


def test_small_classes_drop():
    sampler = MPerClassSampler(SMALL, m=3, batch_size=9, batches_per_epoch=20, small_classes="drop")
    drawn = {c for b in sampler for c in SMALL[b]}
    assert drawn == {0, 1, 3}


def test_small_classes_replace():
    sampler = MPerClassSampler(SMALL, m=3, batch_size=15, batches_per_epoch=10, small_classes="replace")
    for batch in sampler:
        classes = runs_of(batch, SMALL, 3)
        assert sorted(classes) == [0, 1, 2, 3, 4]  # P = 5 = every class
        counts = Counter(batch)
        assert all(counts[i] == 1 for i in batch if SMALL[i] in (0, 1, 3))  # big classes: no duplicates
        assert any(counts[i] > 1 for i in batch if SMALL[i] == 4)  # one image drawn three times


def test_small_classes_take_all_fills_the_batch_like_the_authors_sampler():
    sampler = MPerClassSampler(SMALL, m=3, batch_size=9, batches_per_epoch=50, small_classes="take_all")
    for batch in sampler:
        assert len(batch) == 9 and len(set(batch)) == 9
        per_class = Counter(SMALL[batch].tolist())
        assert all(n <= 3 for n in per_class.values())
        assert all(n == min(3, (SMALL == c).sum()) for c, n in list(per_class.items())[:-1]
                   if c != SMALL[batch[-1]])  # only the last class may be cut short


def test_partial_class_fills_a_batch_that_is_not_a_multiple_of_m():
    """The authors' batch shape: 128 = 25 classes x 5 + 3 images of a 26th class."""
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(40), 8))
    sampler = MPerClassSampler(labels, m=5, batch_size=128, batches_per_epoch=20, seed=2, fill_with_partial_class=True)
    for batch in sampler:
        assert len(batch) == 128 and len(set(batch)) == 128
        assert runs_of(batch[:125], labels, 5) == list(dict.fromkeys(runs_of(batch[:125], labels, 5)))  # 25 classes
        partial = labels[batch[125:]]
        assert (partial == partial[0]).all() and partial[0] not in labels[batch[:125]]  # 3 images of a 26th
    # exact resume: batches depend only on (seed, epoch)
    sampler.set_epoch(3)
    expected = list(sampler)
    resumed = MPerClassSampler(labels, m=5, batch_size=128, batches_per_epoch=20, fill_with_partial_class=True)
    resumed.load_state_dict({"seed": 2, "epoch": 3, "position": 7})
    assert list(resumed) == expected[7:]


def test_partial_class_option_changes_nothing_for_a_multiple_of_m():
    plain = list(MPerClassSampler(LABELS, m=4, batch_size=12, batches_per_epoch=5, seed=9))
    assert plain == list(MPerClassSampler(LABELS, m=4, batch_size=12, batches_per_epoch=5, seed=9,
                                          fill_with_partial_class=True))


def test_partial_class_with_small_class_policies():
    # replace: a partial class smaller than the remainder is drawn with replacement
    sampler = MPerClassSampler(SMALL, m=3, batch_size=14, batches_per_epoch=10, small_classes="replace",
                               fill_with_partial_class=True)
    for batch in sampler:
        assert len(batch) == 14 and len(set(SMALL[batch].tolist())) == 5
    # take_all is the authors' NPairs walk, cut at batch_size
    sampler = MPerClassSampler(SMALL, m=3, batch_size=10, batches_per_epoch=10, small_classes="take_all",
                               fill_with_partial_class=True)
    assert all(len(batch) == 10 and len(set(batch)) == 10 for batch in sampler)
    with pytest.raises(ValueError, match="needs 6 distinct classes"):
        MPerClassSampler(SMALL, m=3, batch_size=16, small_classes="replace", fill_with_partial_class=True)
    with pytest.raises(TypeError, match="bool"):
        MPerClassSampler(LABELS, m=5, batch_size=12, fill_with_partial_class="yes")


def test_parameter_errors():
    with pytest.raises(ValueError, match="multiple of m.*fill_with_partial_class=True"):
        MPerClassSampler(LABELS, m=5, batch_size=12)
    with pytest.raises(ValueError, match="needs 13 distinct classes"):
        MPerClassSampler(LABELS, m=2, batch_size=26)
    with pytest.raises(UnknownNameError, match="drop, error, replace, take_all"):
        MPerClassSampler(LABELS, m=2, batch_size=8, small_classes="skip")
    with pytest.raises(ValueError, match="labels must be 1-D"):
        MPerClassSampler(np.zeros((4, 2), dtype=int), m=2, batch_size=4)
    with pytest.raises(TypeError, match="integers"):
        MPerClassSampler(np.zeros(4), m=2, batch_size=4)
    with pytest.raises(ValueError, match="m must be a positive int"):
        MPerClassSampler(LABELS, m=0, batch_size=4)
    with pytest.raises(ValueError, match="seed"):
        MPerClassSampler(LABELS, m=2, batch_size=4, seed=-1)
    sampler = MPerClassSampler(LABELS, m=2, batch_size=4, batches_per_epoch=3)
    with pytest.raises(ValueError, match="outside 0..3"):
        sampler.load_state_dict({"seed": 0, "epoch": 0, "position": 4})
    with pytest.raises(KeyError, match="position"):
        sampler.load_state_dict({"seed": 0, "epoch": 0})


# ---------------------------------------------------------------- EpisodeSampler

def test_episode_layout_is_class_major_support_then_query():
    sampler = EpisodeSampler(LABELS, n_way=5, k_shot=2, n_query=3, episodes=20, seed=0)
    assert len(sampler) == 20
    for episode in sampler:
        assert len(episode) == 25 and len(set(episode)) == 25
        classes = runs_of(episode, LABELS, 5)  # each class's 2 + 3 indices are consecutive
        assert len(set(classes)) == 5


def test_episodes_are_what_the_prototypical_loss_splits():
    # the loss side cuts an episode batch (rkd.losses.fewshot.split_episode); the sampler must give its layout
    sampler = EpisodeSampler(LABELS, n_way=3, k_shot=1, n_query=2, episodes=4, seed=7)
    for episode in sampler:
        labels = torch.as_tensor(LABELS[episode])
        features = torch.as_tensor(np.asarray(episode), dtype=torch.float32).unsqueeze(1)
        support, support_labels, query, query_labels = split_episode(features, labels, 3, 1, 2)
        assert support.flatten().tolist() == [episode[0], episode[3], episode[6]]  # the first of each class
        assert query.flatten().tolist() == [episode[i] for i in (1, 2, 4, 5, 7, 8)]
        assert support_labels.repeat_interleave(2).tolist() == query_labels.tolist()


def test_episodes_are_seeded_and_resumable():
    first = list(EpisodeSampler(LABELS, 4, 1, 2, episodes=6, seed=11))
    assert first == list(EpisodeSampler(LABELS, 4, 1, 2, episodes=6, seed=11))
    assert first != list(EpisodeSampler(LABELS, 4, 1, 2, episodes=6, seed=12))
    sampler = EpisodeSampler(LABELS, 4, 1, 2, episodes=6, seed=11)
    iterator = iter(sampler)
    head = [next(iterator), next(iterator)]
    resumed = EpisodeSampler(LABELS, 4, 1, 2, episodes=6)
    resumed.load_state_dict(sampler.state_dict())
    assert head + list(resumed) == first


def test_episode_errors():
    with pytest.raises(ValueError, match=r"fewer than k_shot \+ n_query = 7 images \(class 0: 6 images\)"):
        EpisodeSampler(LABELS, n_way=5, k_shot=2, n_query=5, episodes=1)
    with pytest.raises(ValueError, match="n_way=13 but the labels hold only 12 classes"):
        EpisodeSampler(LABELS, n_way=13, k_shot=1, n_query=1, episodes=1)
    with pytest.raises(ValueError, match="episodes must be a positive int"):
        EpisodeSampler(LABELS, n_way=2, k_shot=1, n_query=1, episodes=0)
