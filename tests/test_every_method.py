"""Every registered method, of every task and every stage, through training steps of
:func:`rkd.train.fit` on the package's own small networks: a method added to
:data:`rkd.methods.METHODS` is checked here without a test of its own (the book's
"Adding a method" page says so)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import BatchSampler, Dataset, RandomSampler

from rkd import models
from rkd.data import EpisodeSampler, MPerClassSampler
from rkd.distill import Distiller
from rkd.losses.terms import TermContext
from rkd.methods import TASKS, get_method, methods_for_task
from rkd.outputs import TAP_NAMES
from rkd.train import TrainConfig, fit

CLASSES, PER_CLASS, SIZE = 6, 8, 12
EPISODE = (3, 2, 2)  # 3-way 2-shot, 2 queries per class
STEPS = 3


class Blobs(Dataset):
    """Seeded 1 x 12 x 12 images, one mean per class."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.targets = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
        self.images = torch.randn(len(self.targets), 1, SIZE, SIZE, generator=generator)
        self.images += self.targets.view(-1, 1, 1, 1) / CLASSES

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.images[index], int(self.targets[index])


def _sampler(task: str, targets: torch.Tensor):
    """The batch layout each task trains on: classes in blocks (metric learning), plain
    random batches (classification), episodes (few-shot)."""
    if task == "metric":
        return MPerClassSampler(targets, m=4, batch_size=12, batches_per_epoch=STEPS, seed=1)
    if task == "classification":
        generator = torch.Generator().manual_seed(1)
        return BatchSampler(RandomSampler(range(len(targets)), generator=generator), batch_size=12, drop_last=True)
    n_way, k_shot, n_query = EPISODE
    return EpisodeSampler(targets, n_way=n_way, k_shot=k_shot, n_query=n_query, episodes=STEPS, seed=1)


def _distiller(name: str, task: str, stage: int) -> Distiller:
    """``name``'s distiller at ``stage`` on two small networks, the teacher wider."""
    torch.manual_seed(0)
    classes = CLASSES if task == "classification" else None
    common = dict(in_channels=1, input_size=SIZE, num_classes=classes, taps=TAP_NAMES)
    teacher = models.build_model("small_cnn_wide", embedding_dim=None if classes else 10, normalize=classes is None,
                                 **common)
    student = models.build_model("small_cnn", embedding_dim=None if classes else 6, **common)
    method = get_method(name, task)
    if len(method.stages) > 1:
        method = method.only_stage(stage)
    if "rrd" in method.term_names:
        method = method.with_term_options("rrd", queue_size=24, feat_dim=8)
    context = TermContext.from_models(student, teacher, num_classes=CLASSES,
                                      episode=EPISODE if task == "fewshot" else None)
    return Distiller(student, teacher, method, context)


EVERY_STAGE = [(name, task, stage) for task in TASKS for name in methods_for_task(task)
               for stage in range(len(get_method(name, task).stages))]


def test_every_task_has_methods():
    assert {task for _, task, _ in EVERY_STAGE} == set(TASKS)


@pytest.mark.parametrize("name, task, stage", EVERY_STAGE, ids=[f"{t}-{n}-stage{s}" for n, t, s in EVERY_STAGE])
def test_every_method_trains(name, task, stage):
    distiller = _distiller(name, task, stage)
    student_before = [p.detach().clone() for p in distiller.student.parameters()]
    teacher_before = [p.detach().clone() for p in distiller.teacher.parameters()]
    dataset = Blobs()
    config = TrainConfig(steps=STEPS, lr=1e-3)
    result = fit(distiller, dataset, _sampler(task, dataset.targets), config, progress=False, num_workers=0)
    assert result.steps == STEPS
    assert set(result.losses) == set(distiller.method.stages[0].terms)
    assert all(torch.isfinite(torch.tensor(value)) for value in result.losses.values()), result.losses
    moved = [not torch.equal(a, b) for a, b in zip(student_before, distiller.student.parameters())]
    assert any(moved), "the student did not change"
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, distiller.teacher.parameters())), \
        "the teacher changed"
