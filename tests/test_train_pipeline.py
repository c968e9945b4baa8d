"""The training input pipeline: a DataLoader with workers whose batches, and so whose
results, do not depend on the number of workers; errors raised at their own step; the
decoded-image cache giving the very same batches."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fixtures_data import make_cub200_tree, write_image
from rkd import data
from rkd.runtime import safe_torch_load
from rkd.train import DecodedImageCache, TrainConfig, fit
from rkd.train.loader import SeededBatchLoader, default_num_workers
from rkd.train.stream import BatchRequest, BatchStream
from test_train import CONFIG, Blobs, assert_same_state, make_distiller, make_sampler, train


def test_results_do_not_depend_on_the_number_of_workers():
    """Blobs draws a random augmentation from the global torch generator in __getitem__."""
    reference, reference_state, reference_steps = train(None, num_workers=0)
    for workers in (1, 2):
        result, state, steps = train(None, num_workers=workers)
        assert steps == reference_steps, workers
        assert result.losses == reference.losses
        assert_same_state(state, reference_state)


def test_another_data_seed_gives_other_augmentations():
    _, first, _ = train(None, num_workers=0, data_seed=1)
    _, second, _ = train(None, num_workers=0, data_seed=2)
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_loading_in_the_main_process_leaves_the_global_generators_alone():
    loader = SeededBatchLoader(Blobs(), data_seed=7)
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    step, digest, (images, labels) = loader.__getitems__(BatchRequest(4, [0, 1, 2], "abc"))
    assert (step, digest) == (4, "abc") and images.shape == (3, 1, 8, 8)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]
    again = loader.__getitems__(BatchRequest(4, [0, 1, 2], "abc"))[2][0]
    other_step = loader.__getitems__(BatchRequest(5, [0, 1, 2], "abc"))[2][0]
    assert torch.equal(images, again), "the augmentation of a step is a function of (data_seed, step)"
    assert not torch.equal(images, other_step)


class FixedBlobs(Blobs):
    """Blobs without augmentation (``transform = None``: loading draws no random numbers), read
    item by item or, with ``many``, through ``__getitems__`` (torch's batched protocol)."""

    transform = None

    def __init__(self, many: bool):
        super().__init__()
        self.many_calls = [] if many else None

    def __getitem__(self, index):
        return self.images[index], int(self.targets[index])

    def __getattr__(self, name):
        if name == "__getitems__" and self.many_calls is not None:
            return self._getitems
        raise AttributeError(name)

    def _getitems(self, indices):
        self.many_calls.append(list(indices))
        return list(zip(self.images[indices], self.targets[indices].tolist()))


def test_fixed_images_load_unseeded_one_by_one_or_at_once_with_the_same_batch():
    request = BatchRequest(4, [5, 0, 9, 0], "abc")
    expected = torch.stack([Blobs().images[i] for i in request.indices])
    torch.manual_seed(5)
    before = torch.get_rng_state()
    for many in (False, True):
        dataset = FixedBlobs(many)
        loader = SeededBatchLoader(dataset, data_seed=7)
        assert not loader.seeded
        step, digest, (images, labels) = loader.__getitems__(request)
        assert (step, digest) == (4, "abc") and torch.equal(images, expected)
        assert labels.tolist() == [int(Blobs().targets[i]) for i in request.indices] and labels.dtype == torch.int64
        assert dataset.many_calls in (None, [request.indices])
    assert torch.equal(torch.get_rng_state(), before)


def test_a_shard_of_a_batch_loads_its_items_as_the_whole_batch_does():
    """What data parallelism (issue 13) needs: each item's random augmentation depends on
    its position in the global batch, not on which process loads it or with whom."""
    whole = BatchStream(make_sampler(), 0, 4)
    odd = BatchStream(make_sampler(), 0, 4, shard=lambda batch_size: range(1, batch_size, 2))
    loader = SeededBatchLoader(Blobs(), data_seed=7)
    for full, part in zip(whole, odd):
        assert part.fingerprint == full.fingerprint and part.indices == full.indices[1::2]
        assert torch.equal(loader.__getitems__(part)[2][0], loader.__getitems__(full)[2][0][1::2])


class DiskOnFire(OSError):
    pass


@pytest.mark.parametrize("workers", [0, 2])
def test_a_loading_error_keeps_its_type_and_message_and_names_its_step(workers):
    bad_index = make_sampler().__iter__().__next__()[0]  # in the first batch of epoch 0

    class BadAt(Blobs):
        def __getitem__(self, index):
            if index == bad_index:
                raise DiskOnFire(f"disk on fire at image {index}")
            return super().__getitem__(index)

    with pytest.raises(DiskOnFire) as info:
        fit(make_distiller(), BadAt(), make_sampler(), CONFIG, progress=False, num_workers=workers)
    assert str(info.value) == f"disk on fire at image {bad_index}"
    assert any("training step 1 of 10" in note for note in info.value.__notes__)


class MiscountedSampler:
    """Says 3 batches per epoch but yields 2."""

    def __len__(self):
        return 3

    def __iter__(self):
        yield from ([0, 1, 2, 3], [4, 5, 6, 7])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_sampler_error_is_raised_at_its_step_despite_prefetching(workers):
    with pytest.raises(ValueError, match=r"yielded 2 batches in epoch 1 but its len\(\) is 3") as info:
        fit(make_distiller("RKD-DA"), Blobs(), MiscountedSampler(), TrainConfig(steps=6), progress=False,
            num_workers=workers)
    assert any("training step 3 of 6" in note for note in info.value.__notes__), info.value.__notes__


def test_the_checkpointed_sampler_state_is_the_loops_not_the_prefetching_loaders(tmp_path):
    """Workers ask for batches ahead of the loop; the checkpoint must say where the loop is."""
    path = tmp_path / "run.ckpt"
    stop_after = 4

    class Stop(Exception):
        pass

    def stop(done, losses):
        if done == stop_after:
            raise Stop()

    config = TrainConfig(steps=10, lr=1e-2, checkpoint_every=1)
    with pytest.raises(Stop):
        fit(make_distiller(), Blobs(), make_sampler(), config, checkpoint_path=path, on_step=stop, progress=False,
            num_workers=2)
    assert safe_torch_load(path)["sampler"] == {"seed": 1, "epoch": 1, "position": 1}  # step 4 = epoch 1, batch 1


def test_default_number_of_workers(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(12)))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert default_num_workers(torch.device("cuda")) == 8  # all CPUs but the loop's, at most the authors' 8
    assert default_num_workers(torch.device("cpu")) == 8
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert default_num_workers(torch.device("cpu")) == 0  # the training threads take both cores
    assert default_num_workers(torch.device("cuda")) == 1
    with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
        train(None, num_workers=-1)


# ----------------------------------------------------------------------------- decoded-image cache


@pytest.fixture
def cub_train(tmp_path):
    top = make_cub200_tree(tmp_path / "cub", num_classes=4, images_per_class=3)
    return data.get_dataset("cub200", top, "train", transform=data.get_transform("metric", train=True))


@pytest.mark.parametrize("location", ["memory", "disk"])
def test_the_decoded_image_cache_gives_the_same_batches(cub_train, tmp_path, location):
    where = "memory" if location == "memory" else tmp_path / "cache" / "cub_train.npy"
    cached = DecodedImageCache(cub_train, where)
    assert cached.images.shape == (len(cub_train), 256, 256, 3) and cached.images.dtype == np.uint8
    assert len(cached) == len(cub_train) and torch.equal(torch.as_tensor(cached.targets), cub_train.targets)
    plain, fast = SeededBatchLoader(cub_train, 3), SeededBatchLoader(cached, 3)
    for step in range(3):  # random crops and flips: seeded per step, identical
        request = BatchRequest(step, list(range(len(cub_train))), "x")
        a, b = plain.__getitems__(request)[2], fast.__getitems__(request)[2]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_the_disk_cache_is_reused_while_its_key_matches(cub_train, tmp_path, monkeypatch):
    path = tmp_path / "cub_train.npy"
    DecodedImageCache(cub_train, path)
    loads = []
    real = type(cub_train).load_image
    monkeypatch.setattr(type(cub_train), "load_image", lambda self, i: loads.append(i) or real(self, i))
    DecodedImageCache(cub_train, path)
    assert loads == [], "a matching cache is read, not rebuilt"
    cub_train.transform = data.get_transform("metric", train=False)  # Resize((256, 256)) still, CenterCrop too
    DecodedImageCache(cub_train, path)
    assert len(loads) == len(cub_train), "another cached transform: rebuilt"


def test_the_cache_refuses_what_it_cannot_cache(tmp_path):
    with pytest.raises(TypeError, match="Blobs has no load_image"):
        DecodedImageCache(Blobs())
    top = make_cub200_tree(tmp_path / "cub", num_classes=2, images_per_class=2)
    dataset = data.get_dataset("cub200", top, "train")  # no transform: images of their own sizes
    write_image(dataset.paths[1], seed=9, size=(20, 14), mode="RGB")
    with pytest.raises(ValueError, match=r"the cache holds images of one size.*Resize\(\(h, w\)\)"):
        DecodedImageCache(dataset)


def test_fit_with_the_image_cache_trains_like_without(cub_train):
    def tiny_run(**kwargs):
        torch.manual_seed(0)
        from rkd import models
        from rkd.distill import Distiller
        from rkd.losses.terms import TermContext
        from rkd.methods import get_method

        student = models.build_model("small_cnn", in_channels=3, input_size=224, embedding_dim=4)
        distiller = Distiller(student, None, get_method("Triplet", task="metric"),
                              TermContext.from_models(student, None))
        sampler = data.MPerClassSampler(cub_train.targets, m=3, batch_size=6, seed=0)
        result = fit(distiller, cub_train, sampler, TrainConfig(steps=2), progress=False, num_workers=0,
                     **kwargs)
        return result.losses, {k: v.clone() for k, v in student.state_dict().items()}

    losses, state = tiny_run()
    cached_losses, cached_state = tiny_run(image_cache="memory")
    assert cached_losses == losses
    assert_same_state(cached_state, state)
