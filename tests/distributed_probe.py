"""Tiny distillation runs, trained by tests/test_distributed.py twice: in one process, and
here, under ``torchrun --nproc_per_node 2`` with the gloo backend on the CPU.

Every run records, at every step, the loss terms (``on_step``) and the gradients the
optimiser is handed (an optimiser step pre-hook), and ends with the trainable state; the test
compares the two processes' records with the single-process ones. A resumed run (killed
after its checkpoint, started again) is recorded too.

    torchrun --standalone --nproc_per_node 2 tests/distributed_probe.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import rkd  # noqa: F401  (first: the CPU pin goes into the environment before torch loads)
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import Dataset

from rkd.data import MPerClassSampler
from rkd.distill import Distiller
from rkd.losses.terms import TermContext
from rkd.methods import get_method
from rkd.train import TrainConfig, fit
from rkd.train.checkpoint import trainable_state

CLASSES, PER_CLASS = 4, 10
# 3 classes x 3 images: shards of 5 and 4 rows (unequal), and a class split between them
M, BATCH = 3, 9
STEPS = 4

#: name -> (method, method options, data-parallel options)
RUNS = {
    "RKD-DA": ("RKD-DA", {}, {}),
    "RKD-DA local anchors": ("RKD-DA", {}, {"angle_anchors": "local"}),
    "RRD": ("RRD", {"rrd": {"queue_size": 12, "feat_dim": 4}}, {}),
    "Triplet": ("Triplet", {}, {}),
    # its hint stage (each stage trains as a run of its own): learned regressors, a feature-map tap
    "FitNet": ("FitNet", {"fitnet": {"hints": ("block2", "embedding")}}, {}),
}
RESUMED = "RRD"  # the run also trained killed-and-resumed, with a loader worker

CONFIG = TrainConfig(steps=STEPS, optimizer="sgd", lr=0.05, momentum=0.9, checkpoint_every=2)


class Blobs(Dataset):
    """Seeded 1 x 8 x 8 images, one mean per class, with a random augmentation."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.targets = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
        self.images = torch.randn(len(self.targets), 1, 8, 8, generator=generator) + self.targets.view(-1, 1, 1, 1)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.images[index] + 0.1 * torch.randn(1, 8, 8), int(self.targets[index])


class TinyNet(nn.Module):
    """Two Linear layers and the model output contract, without BatchNorm: SyncBatchNorm
    does not run on the CPU, and per-process statistics would differ from one process's.
    The hidden layer doubles as a 4-channel 2 x 2 feature map, the tap ``"block2"``."""

    def __init__(self, embedding_dim: int, normalize: bool):
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(1), nn.Linear(64, 16), nn.Tanh())
        self.head = nn.Linear(16, embedding_dim)
        self.embedding_dim, self.tap_channels, self.normalize = embedding_dim, {"block2": 4}, normalize

    def forward(self, x):
        hidden = self.hidden(x)
        embedding = self.head(hidden)
        return {"embedding": F.normalize(embedding, dim=1) if self.normalize else embedding,
                "block2": hidden.view(-1, 4, 2, 2)}


def make_distiller(name: str) -> Distiller:
    method_name, options, _ = RUNS[name]
    torch.manual_seed(0)
    teacher = TinyNet(10, normalize=True)
    student = TinyNet(6, normalize=method_name in ("Triplet", "FitNet"))
    method = get_method(method_name, task="metric")
    for term, term_options in options.items():
        method = method.with_term_options(term, **term_options)
    if len(method.stages) > 1:
        method = method.only_stage(0)
    return Distiller(student, teacher, method, TermContext.from_models(student, teacher))


class Interrupted(Exception):
    pass


def train(name: str, checkpoint=None, stop_after: int | None = None, num_workers: int = 0) -> dict:
    """One run; returns its records (``stop_after``: raise after that step, as a kill would)."""
    distiller = make_distiller(name)
    sampler = MPerClassSampler(Blobs().targets, m=M, batch_size=BATCH, batches_per_epoch=3, seed=1)
    losses = []

    def on_step(done, values):
        losses.append((done, values))
        if done == stop_after:
            raise Interrupted

    grads = []

    def record_gradients(optimizer, args, kwargs):  # before each update: what DDP handed the optimiser
        grads.append([None if p.grad is None else p.grad.detach().clone()
                      for group in optimizer.param_groups for p in group["params"]])

    hook = register_optimizer_step_pre_hook(record_gradients)
    torch.manual_seed(123)
    try:
        fit(distiller, Blobs(), sampler, CONFIG, checkpoint_path=checkpoint, progress=False, on_step=on_step,
            num_workers=num_workers, log_path=False)
    except Interrupted:
        pass
    finally:
        hook.remove()
    return {"losses": losses, "grads": grads,
            "state": {k: v.detach().clone() for k, v in trainable_state(distiller).items()}}


def main(out: Path) -> None:
    from rkd.train import distributed

    parallel = distributed.setup("cpu")
    assert parallel is not None and parallel.world_size == 2, "run me under torchrun --nproc_per_node 2"
    records = {}
    for name, (_, _, parallel_options) in RUNS.items():
        distributed.configure(**parallel_options)
        records[name] = train(name)
    distributed.configure()
    checkpoint = out / "resume.pt"
    records["killed"] = train(RESUMED, checkpoint=checkpoint, stop_after=3, num_workers=1)
    records["resumed"] = train(RESUMED, checkpoint=checkpoint, num_workers=1)
    torch.save(records, out / f"rank{parallel.rank}.pt")
    distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
