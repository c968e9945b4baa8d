"""The training loop: checkpoints (atomic, complete, verified on resume), exact resumption
in-process, and refusal of checkpoints that belong to another run."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import BatchSampler, Dataset, RandomSampler

import rkd.runtime
from rkd import models
from rkd.data import MPerClassSampler
from rkd.distill import Distiller
from rkd.losses.terms import TermContext
from rkd.methods import get_method
from rkd.runtime import UnsafeCheckpointError, safe_torch_load
from rkd.train import CHECKPOINT_FORMAT, CheckpointMismatchError, TrainConfig, fit

CLASSES, PER_CLASS = 4, 10


class Blobs(Dataset):
    """Seeded 1 x 8 x 8 images, one mean per class, with ``.targets``."""

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.targets = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
        self.images = torch.randn(len(self.targets), 1, 8, 8, generator=generator) + self.targets.view(-1, 1, 1, 1)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        # a random augmentation, so the global torch RNG matters to the result
        return self.images[index] + 0.1 * torch.randn(1, 8, 8), int(self.targets[index])


def make_distiller(method: str = "RRD", embedding_dim: int = 6) -> Distiller:
    torch.manual_seed(0)
    teacher = models.build_model("small_cnn", in_channels=1, input_size=8, embedding_dim=10, normalize=True)
    student = models.build_model("small_cnn", in_channels=1, input_size=8, embedding_dim=embedding_dim)
    spec = get_method(method, task="metric")
    if "rrd" in spec.term_names:
        spec = spec.with_term_options("rrd", queue_size=24, feat_dim=8)
    return Distiller(student, teacher, spec, TermContext.from_models(student, teacher))


def make_sampler(seed: int = 1, batches_per_epoch: int = 3) -> MPerClassSampler:
    return MPerClassSampler(Blobs().targets, m=4, batch_size=8, batches_per_epoch=batches_per_epoch, seed=seed)


CONFIG = TrainConfig(steps=10, lr=1e-2, milestones=(6,), checkpoint_every=4)


def train(checkpoint=None, config=CONFIG, method="RRD", sampler=None, **kwargs):
    distiller = make_distiller(method)
    torch.manual_seed(123)
    steps = []
    result = fit(distiller, Blobs(), sampler if sampler is not None else make_sampler(), config,
                 checkpoint_path=checkpoint, progress=False,
                 on_step=lambda done, losses: steps.append((done, losses)), **kwargs)
    state = {k: v.clone() for k, v in distiller.state_dict().items() if not k.startswith("teacher.")}
    return result, state, steps


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class SimulatedKill(BaseException):
    """Stands for SIGKILL inside a write: not an Exception, so nothing catches it."""


def crash_during_checkpoint_at(monkeypatch, step: int) -> None:
    """Make the atomic write of the checkpoint of ``step`` die halfway through."""
    real_save = torch.save

    def save(obj, handle, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("step") == step:
            handle.write(b"\x80\x02half a checkpoint")
            raise SimulatedKill()
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(rkd.runtime.torch, "save", save)


def test_checkpoint_holds_every_piece_of_state(tmp_path):
    path = tmp_path / "run.ckpt"
    result, state, steps = train(path)
    assert [done for done, _ in steps] == list(range(1, 11))
    checkpoint = safe_torch_load(path)
    assert checkpoint["format"] == CHECKPOINT_FORMAT and checkpoint["step"] == 10
    assert checkpoint["method"] == {"name": "RRD", "stages": [["train", {"rrd": 1.0}]],
                                    "options": {"rrd": {"queue_size": 24, "feat_dim": 8}}}
    assert {"torch", "numpy", "python"} <= set(checkpoint["rng"])
    assert checkpoint["sampler"] == {"seed": 1, "epoch": 3, "position": 1}
    assert "terms.rrd.loss.queue" in checkpoint["distiller"] and "terms.rrd.loss.queue_ptr" in checkpoint["distiller"]
    assert not any(k.startswith("teacher.") for k in checkpoint["distiller"])
    assert checkpoint["optimizer"]["state"] and checkpoint["scheduler"]["last_epoch"] == 10
    assert_same_state(checkpoint["distiller"], state)
    # a finished run started again trains nothing and reports the same losses
    again, state_again, steps_again = train(path)
    assert again.resumed_from == 10 and steps_again == [] and again.losses == result.losses
    assert_same_state(state, state_again)


@pytest.mark.parametrize("method", ["RRD", "Triplet"])
def test_crash_inside_a_checkpoint_write_keeps_the_previous_one_and_resumes_exactly(tmp_path, monkeypatch, method):
    reference, reference_state, reference_steps = train(None, method=method)

    path = tmp_path / "run.ckpt"
    with monkeypatch.context() as patch:
        crash_during_checkpoint_at(patch, step=8)
        with pytest.raises(SimulatedKill):
            train(path, method=method)
    assert safe_torch_load(path)["step"] == 4, "the checkpoint of step 4 must survive the crash at step 8"
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt", "run.log.csv"], "the failed write's temporary file is removed"

    # a SIGKILL would have left the temporary file behind: the next run must ignore it and remove it
    orphan = tmp_path / ".run.ckpt.abc123.tmp"
    orphan.write_bytes(b"\x80\x02garbage")
    resumed, resumed_state, resumed_steps = train(path, method=method)
    assert resumed.resumed_from == 4
    assert not orphan.exists()
    assert resumed_steps == reference_steps[4:]
    assert resumed.losses == reference.losses
    assert_same_state(resumed_state, reference_state)


def test_resume_at_every_checkpoint_matches_an_uninterrupted_run(tmp_path):
    """Stop (by raising from on_step) right after every step in turn; resume; compare."""
    reference, reference_state, _ = train(None)
    config = TrainConfig(steps=10, lr=1e-2, milestones=(6,), checkpoint_every=1)
    reference_every, _, _ = train(None, config=config)

    class Stop(Exception):
        pass

    for stop_after in range(1, 10):
        path = tmp_path / f"stop{stop_after}.ckpt"

        def stop(done, losses, stop_after=stop_after):
            if done == stop_after:
                raise Stop()

        distiller = make_distiller()
        torch.manual_seed(123)
        with pytest.raises(Stop):
            fit(distiller, Blobs(), make_sampler(), config, checkpoint_path=path, on_step=stop, progress=False)
        resumed, state, _ = train(path, config=config)
        assert resumed.resumed_from == stop_after
        assert resumed.losses == reference_every.losses
        assert_same_state(state, reference_state)


def test_resume_refuses_another_configuration(tmp_path):
    path = tmp_path / "run.ckpt"
    train(path)
    other = TrainConfig(steps=12, lr=1e-2, milestones=(6,), checkpoint_every=4)
    with pytest.raises(CheckpointMismatchError, match=r"another configuration \(steps=10 there, 12 here\)"):
        train(path, config=other)
    with pytest.raises(CheckpointMismatchError, match=r"written for method 'RRD' \(train: rrd x1\), this run "
                                                      r"trains 'RKD-DA' \(train: rkd_distance x1, rkd_angle x2\)"):
        train(path, method="RKD-DA")
    reweighted = make_distiller()
    reweighted.method = get_method("RRD", task="metric", rrd=2.0).with_term_options("rrd", queue_size=24, feat_dim=8)
    with pytest.raises(CheckpointMismatchError, match=r"this run trains 'RRD' \(train: rrd x2\)"):
        fit(reweighted, Blobs(), make_sampler(), CONFIG, checkpoint_path=path, progress=False)
    with pytest.raises(CheckpointMismatchError, match=r"another batch sampler \(seed=1 in the checkpoint, 2 now\)"):
        train(path, sampler=make_sampler(seed=2))
    with pytest.raises(CheckpointMismatchError, match="another number of batches per epoch than this one"):
        train(path, sampler=make_sampler(batches_per_epoch=4))
    distiller = make_distiller(embedding_dim=7)
    with pytest.raises(CheckpointMismatchError, match="does not fit this model"):
        fit(distiller, Blobs(), make_sampler(), CONFIG, checkpoint_path=path, progress=False)


def test_resume_refuses_a_checkpoint_of_another_format(tmp_path):
    path = tmp_path / "old.ckpt"
    torch.save({"step": 4, "config": {}}, path)
    with pytest.raises(CheckpointMismatchError, match=f"not a training checkpoint of format {CHECKPOINT_FORMAT}"):
        train(path)


def test_resume_refuses_a_sampler_that_does_not_redraw_its_batches(tmp_path):
    """torch's RandomSampler reshuffles from the global RNG on every pass: mid-epoch, the
    re-drawn epoch differs from the one the killed run used, and resuming would be wrong."""
    dataset = Blobs()
    config = TrainConfig(steps=5, lr=1e-2, checkpoint_every=2)

    def sampler():
        return BatchSampler(RandomSampler(dataset), batch_size=8, drop_last=True)  # 5 batches per epoch

    class Stop(Exception):
        pass

    def stop(done, losses):
        if done == 2:
            raise Stop()

    path = tmp_path / "run.ckpt"
    with pytest.raises(Stop):
        fit(make_distiller("RKD-DA"), dataset, sampler(), config, checkpoint_path=path, on_step=stop, progress=False)
    with pytest.raises(CheckpointMismatchError, match="does not re-draw the batches of the interrupted run"):
        fit(make_distiller("RKD-DA"), dataset, sampler(), config, checkpoint_path=path, progress=False)


def test_fixed_batches_without_set_epoch_resume_exactly(tmp_path):
    """A plain list of index lists (the same on every pass) needs no set_epoch."""
    batches = [list(range(i, 40, 5))[:8] for i in range(5)]
    config = TrainConfig(steps=7, lr=1e-2, checkpoint_every=3)
    reference, reference_state, _ = train(None, config=config, sampler=batches)

    class Stop(Exception):
        pass

    def stop(done, losses):
        if done == 4:
            raise Stop()

    path = tmp_path / "run.ckpt"
    distiller = make_distiller()
    torch.manual_seed(123)
    with pytest.raises(Stop):
        fit(distiller, Blobs(), batches, config, checkpoint_path=path, on_step=stop, progress=False)
    resumed, state, _ = train(path, config=config, sampler=batches)
    assert resumed.resumed_from == 3 and resumed.losses == reference.losses
    assert_same_state(state, reference_state)


def test_resume_refuses_a_checkpoint_with_pickled_objects(tmp_path):
    path = tmp_path / "run.ckpt"
    train(path)
    checkpoint = safe_torch_load(path)

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    checkpoint["running_losses"] = Payload()
    torch.save(checkpoint, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load .*could run arbitrary code") as info:
        train(path)
    assert "GLOBAL posix.system" in str(info.value), "the message names the object refused"
    assert "weights_only` set to `False`" not in str(info.value), "and does not suggest the unsafe way round"


def test_resume_reports_a_truncated_checkpoint(tmp_path):
    path = tmp_path / "run.ckpt"
    train(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(RuntimeError, match=r"unreadable \(truncated or corrupt\?\).*Delete it to start afresh"):
        train(path)


def test_errors_inside_a_step_name_the_step():
    order = []
    for epoch in range(4):  # the indices the 10 steps of 3-batch epochs load, in order
        sampler = make_sampler()
        sampler.set_epoch(epoch)
        order += [i for batch in sampler for i in batch]
    first_seen = {}
    for position, index in enumerate(order):
        first_seen.setdefault(index, position)
    bad_index = max(first_seen, key=first_seen.get)  # the image loaded first the latest
    failing_step = first_seen[bad_index] // 8 + 1
    assert failing_step > 1

    class BadAt(Blobs):
        def __getitem__(self, index):
            if index == bad_index:
                raise OSError("disk on fire")
            return super().__getitem__(index)

    with pytest.raises(OSError, match="disk on fire") as info:
        fit(make_distiller(), BadAt(), make_sampler(), CONFIG, progress=False)
    assert any(f"training step {failing_step} of 10" in note for note in info.value.__notes__)


def test_train_config_validation():
    with pytest.raises(ValueError, match="steps must be a positive int"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'; valid names: adam, sgd"):
        TrainConfig(steps=1, optimizer="adamw")
    with pytest.raises(ValueError, match="milestones must be increasing"):
        TrainConfig(steps=10, milestones=(5, 2))
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 0"):
        TrainConfig(steps=10, checkpoint_every=-1)
