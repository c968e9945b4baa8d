"""Distiller: frozen teacher, trainable terms, one stage, and every method end to end on tiny models."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rkd.distill import Distiller, PrecomputedRows, PrecomputedTeacher
from rkd.losses.terms import LOSS_TERMS, TermContext
from rkd.methods import TASKS, get_method, methods_for_task


class TinyNet(nn.Module):
    """A 3-block conv net that follows the model output contract on 3 x 8 x 8 inputs."""

    def __init__(self, channels=(4, 6, 8), embedding_dim=5, num_classes=None, normalize=True):
        super().__init__()
        c2, c3, c4 = channels
        self.block2 = nn.Sequential(nn.Conv2d(3, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU())
        self.block3 = nn.Sequential(nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.ReLU())
        self.block4 = nn.Sequential(nn.Conv2d(c3, c4, 3, stride=2, padding=1), nn.ReLU())
        self.normalize = normalize
        self.tap_channels = {"block2": c2, "block3": c3, "block4": c4}
        if num_classes is None:
            self.head = nn.Linear(c4, embedding_dim)
            self.embedding_dim = embedding_dim
            self.classifier = None
        else:  # classifiers: the embedding is the pooled feature
            self.head = nn.Identity()
            self.embedding_dim = c4
            self.classifier = nn.Linear(c4, num_classes)

    def forward(self, x):
        b2 = self.block2(x)
        b3 = self.block3(b2)
        b4 = self.block4(b3)
        embedding = self.head(b4.mean(dim=(2, 3)))
        out = {"block2": b2, "block3": b3, "block4": b4}
        if self.classifier is not None:
            out["logits"] = self.classifier(embedding)
        out["embedding"] = F.normalize(embedding, dim=1) if self.normalize and self.classifier is None else embedding
        return out


NUM_CLASSES = 4
EPISODE = (3, 2, 2)  # 3-way 2-shot, 2 queries per class


def make_pair(task, seed=0):
    torch.manual_seed(seed)
    classes = NUM_CLASSES if task == "classification" else None
    student = TinyNet((4, 6, 8), embedding_dim=5, num_classes=classes)
    teacher = TinyNet((6, 10, 12), embedding_dim=7, num_classes=classes)
    return student, teacher


def make_batch(task, seed=0):
    g = torch.Generator().manual_seed(seed)
    if task == "fewshot":
        n_way, k_shot, n_query = EPISODE
        labels = torch.tensor([7, 2, 9]).repeat_interleave(k_shot + n_query)  # class-major blocks
    else:
        labels = torch.arange(NUM_CLASSES).repeat_interleave(3)  # 4 classes x 3 images
    return torch.randn(labels.shape[0], 3, 8, 8, generator=g), labels


def make_distiller(name, task, seed=0, stage=0, **overrides):
    """The method's distiller on tiny models; a method trained in stages at its ``stage``."""
    student, teacher = make_pair(task, seed)
    method = get_method(name, task, **overrides)
    if len(method.stages) > 1:
        method = method.only_stage(stage)
    if "rrd" in method.term_names:
        method = method.with_term_options("rrd", queue_size=32, feat_dim=8)
    context = TermContext.from_models(student, teacher, num_classes=NUM_CLASSES,
                                      episode=EPISODE if task == "fewshot" else None)
    return Distiller(student, teacher, method, context)


ALL = [(name, task) for task in TASKS for name in methods_for_task(task)]
#: every stage of every method: a method trained in stages trains each as a run of its own
ALL_STAGES = [(name, task, stage) for name, task in ALL for stage in range(len(get_method(name, task).stages))]


@pytest.mark.parametrize("name, task, stage_index", ALL_STAGES)
def test_every_method_runs_forward_and_backward(name, task, stage_index):
    distiller = make_distiller(name, task, stage=stage_index).train()
    x, labels = make_batch(task)
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.01)
    for stage in distiller.method.stages:
        optimizer.zero_grad()
        losses = distiller(x, labels)
        assert set(losses) == set(stage.terms)
        for term, value in losses.items():
            assert value.dim() == 0 and torch.isfinite(value), (term, value)
        sum(losses.values()).backward()
        optimizer.step()
        grads = [p.grad for p in distiller.student.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert all(p.grad is None for p in distiller.teacher.parameters())


def test_losses_are_weighted():
    distiller = make_distiller("RKD-DA", "classification").eval()
    x, labels = make_batch("classification")
    losses = distiller(x, labels)
    with torch.no_grad():
        s = F.normalize(distiller.student(x)["embedding"], dim=1)
        t = F.normalize(distiller.teacher(x)["embedding"], dim=1)
    from rkd.losses import rkd_angle, rkd_distance
    torch.testing.assert_close(losses["rkd_distance"], 25.0 * rkd_distance(s, t))
    torch.testing.assert_close(losses["rkd_angle"], 50.0 * rkd_angle(s, t))
    torch.testing.assert_close(losses["cross_entropy"], F.cross_entropy(distiller.student(x)["logits"], labels))


def test_teacher_is_frozen_and_stays_in_eval_mode():
    distiller = make_distiller("RKD-DA", "metric")
    teacher = distiller.teacher
    distiller.train()
    assert distiller.student.training and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    running_mean = teacher.block2[1].running_mean.clone()
    x, labels = make_batch("metric")
    sum(distiller(x, labels).values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert torch.equal(teacher.block2[1].running_mean, running_mean)  # BN statistics untouched
    teacher.train()  # even if someone flips it directly, the forward puts it back
    distiller(x, labels)
    assert not teacher.training
    trainable = {id(p) for p in distiller.trainable_parameters()}
    assert not trainable & {id(p) for p in teacher.parameters()}


def test_fitnet_regressors_are_trained():
    distiller = make_distiller("FitNet", "metric").train()
    regressors = list(distiller.terms["fitnet"].parameters())
    assert len(regressors) == 4  # block2, block3, block4, embedding
    trainable = {id(p) for p in distiller.trainable_parameters()}
    assert all(id(p) in trainable for p in regressors)
    assert all(id(p) in trainable for p in distiller.student.parameters())
    before = [p.detach().clone() for p in regressors]
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.5)
    x, labels = make_batch("metric")
    sum(distiller(x, labels).values()).backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, regressors))
    assert any(key.startswith("terms.fitnet.regressors.") for key in distiller.state_dict())


def test_a_method_in_stages_trains_one_stage_per_distiller_and_the_teacher_runs_only_when_needed():
    calls = []
    x, labels = make_batch("metric")
    hint = make_distiller("FitNet", "metric", stage=0).train()
    hint.teacher.register_forward_hook(lambda *args: calls.append(1))
    assert set(hint(x, labels)) == {"fitnet"} and len(calls) == 1
    task = make_distiller("FitNet", "metric", stage=1).train()
    task.teacher.register_forward_hook(lambda *args: calls.append(1))
    assert set(task(x, labels)) == {"triplet"} and len(calls) == 1
    assert task.method.name == "FitNet (task stage)"
    student, teacher = make_pair("metric")
    with pytest.raises(ValueError, match="trains in 2 stages.*only_stage"):
        Distiller(student, teacher, get_method("FitNet", "metric"), TermContext.from_models(student, teacher))


def test_teacher_may_be_none_only_when_no_term_needs_it():
    student, _ = make_pair("metric")
    context = TermContext(student_dim=5)
    distiller = Distiller(student, None, get_method("Baseline", "metric"), context)
    x, labels = make_batch("metric")
    assert set(distiller(x, labels)) == {"triplet"}
    with pytest.raises(ValueError, match="rkd_distance"):
        Distiller(student, None, get_method("RKD-DA", "metric"), TermContext(student_dim=5, teacher_dim=7))


def test_rrd_state_travels_in_the_state_dict():
    distiller = make_distiller("RRD", "classification")
    state = distiller.state_dict()
    assert state["terms.rrd.loss.queue"].shape == (32, 8)
    assert "terms.rrd.loss.queue_ptr" in state
    x, labels = make_batch("classification")
    distiller.train()(x, labels)
    assert int(distiller.terms["rrd"].loss.queue_ptr) == x.shape[0]
    distiller.eval()(x, labels)
    assert int(distiller.terms["rrd"].loss.queue_ptr) == x.shape[0]


def test_missing_taps_fail_clearly():
    student, teacher = make_pair("metric")
    context = TermContext(student_dim=5, teacher_dim=7)  # no tap channels given
    with pytest.raises(ValueError, match="taps="):
        Distiller(student, teacher, get_method("FitNet", "metric").only_stage(0), context)
    distiller = make_distiller("Attention", "metric")
    x, labels = make_batch("metric")
    distiller.student.forward = lambda inp: {"embedding": torch.randn(inp.shape[0], 5)}
    with pytest.raises(KeyError, match="block2"):
        distiller(x, labels)


def test_fewshot_needs_an_episode_layout():
    student, teacher = make_pair("fewshot")
    with pytest.raises(ValueError, match="episode"):
        Distiller(student, teacher, get_method("RKD-D", "fewshot"), TermContext.from_models(student, teacher))
    distiller = make_distiller("Prototypical", "fewshot")
    x, labels = make_batch("fewshot")
    with pytest.raises(ValueError, match="class-major"):
        distiller(x, labels[torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(0))])


def test_return_outputs_and_every_term_is_registered():
    distiller = make_distiller("HKD", "classification")
    x, labels = make_batch("classification")
    losses, outputs = distiller(x, labels, return_outputs=True)
    assert set(losses) == {"cross_entropy", "hkd"} and outputs["logits"].shape == (12, NUM_CLASSES)
    assert set(LOSS_TERMS.names()) == {
        "triplet", "cross_entropy", "prototypical", "rkd_distance", "rkd_angle", "hkd",
        "fitnet", "attention", "darkrank", "rrd"}


# ---------------------------------------------------------------------------- the precomputed teacher


def precomputed(images, batch_size=4):
    """A TinyNet teacher and its outputs precomputed over ``images`` (a dataset of (image, label) pairs)."""
    _, teacher = make_pair("metric")
    dataset = [(image, 0) for image in images]
    return teacher.eval(), PrecomputedTeacher(teacher, dataset, batch_size=batch_size)


def test_the_precomputed_teacher_gives_each_image_the_outputs_of_its_row():
    images = torch.randn(11, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    teacher, table = precomputed(images)
    rows = torch.tensor([3, 0, 10, 3, 7])
    found = table(images[rows])
    assert isinstance(found, PrecomputedRows) and set(found) == {"block2", "block3", "block4", "embedding"}
    with torch.no_grad():
        live = teacher(images[rows])
    for key in found:
        assert torch.equal(found[key], table.outputs[key][rows])  # exactly the stored rows
        torch.testing.assert_close(found[key], live[key])  # a forward pass, up to float rounding
    assert table.embedding_dim == teacher.embedding_dim and not table.train().training


def test_a_repeated_image_gets_its_first_rows_outputs_and_an_unknown_one_goes_through_the_teacher():
    images = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    images[4] = images[1]
    teacher, table = precomputed(images, batch_size=3)
    assert torch.equal(table(images[[4]])["embedding"], table.outputs["embedding"][[1]])
    outside = images[[0, 2]].clone()
    outside[1, 0, 0, 0] += 1.0
    found = table(outside)
    assert isinstance(found, dict)
    with torch.no_grad():
        assert torch.equal(found["embedding"], teacher(outside)["embedding"])
    assert len(table(images[:0])["embedding"]) == 0


def test_the_precomputed_outputs_are_ordinary_tensors_whatever_mode_they_are_read_in():
    images = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    _, table = precomputed(images)
    with torch.inference_mode():  # as fit runs the teacher
        found = table(images)
        inside = found["block2"]
    outside = found["block3"]  # read by a loss term, after the teacher's call
    for target in (inside, outside):
        assert not target.is_inference() and not target.requires_grad
        prediction = torch.zeros_like(target, requires_grad=True)
        F.mse_loss(prediction, target).backward()  # inference tensors cannot be saved for backward
        assert prediction.grad is not None


@pytest.mark.parametrize("name", ["RKD-DA", "Attention", "FitNet"])
def test_a_distiller_with_a_precomputed_teacher_gives_the_live_teachers_losses(name):
    x, labels = make_batch("metric")
    live = make_distiller(name, "metric")
    student, teacher = live.student, live.teacher
    table = PrecomputedTeacher(teacher, [(image, 0) for image in x])
    method = live.method
    precomputed_distiller = Distiller(student, table, method, TermContext.from_models(student, table))
    precomputed_distiller.load_state_dict(live.state_dict(), strict=False)
    torch.manual_seed(0)  # the same triplets, where a term draws them
    expected = live(x, labels)
    torch.manual_seed(0)
    found = precomputed_distiller(x, labels)
    assert set(found) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(found[key], value)
