"""A short ci training, run in a subprocess by tests/test_portable.py under settings that
emulate other CPUs; prints a digest of the final weights and losses.

A real model and loss at ci scale: a `small_cnn` student distilled with RKD-DA plus the
triplet loss (the authors' sampler numerics) from a frozen random `small_cnn` teacher,
60 steps of Adam on scikit-learn's digits upscaled to 28x28, then Recall@1 on the test
classes: every kernel family a ci run uses (convolutions, matrix products, exp/log,
softmax reductions, Adam's update, the sampler's draws).

Then every registered loss term, forward and backward, on fixed outputs of the right
shapes: a term that the training above does not reach (DarkRank, RRD, FitNet, ...) can
still take a processor-dependent path (DarkRank's ``d^3`` once did: the backward of
``pow(d^2, 1.5)`` is MKL's square root), and its digest shows it.
"""
import hashlib
import sys

import rkd.pin  # noqa: F401  (first: the CPU pin goes into the environment before torch loads)
import torch

from rkd.data.splits import load_split
from rkd.distill import Distiller
from rkd.evaluate import recall
from rkd.experiments.datasets import DIGITS
from rkd.losses.terms import LOSS_TERMS, TermContext
from rkd.methods import get_method
from rkd.models import build_model
from rkd.runtime import configure_determinism, seed_everything
from rkd.data import MPerClassSampler
from rkd.train import TrainConfig, fit

STEPS = 60
#: options for the terms whose defaults are sized for real batches
TERM_OPTIONS = {"rrd": {"feat_dim": 16, "queue_size": 64}}


def loss_terms_digest() -> str:
    """Digest of every registered term's loss and gradients on seeded outputs of an
    episode-shaped batch (5 classes x 4 images, class-major: every task's layout)."""
    seed_everything(1)
    n_way, k_shot, n_query = 5, 2, 2
    labels = torch.arange(n_way).repeat_interleave(k_shot + n_query)
    channels = {"student": {"block2": 8, "block3": 12, "block4": 16}, "teacher": {"block2": 16, "block3": 24,
                                                                                   "block4": 32}}
    dims = {"student": 16, "teacher": 32}

    def outputs(role: str) -> dict[str, torch.Tensor]:
        made = {"embedding": torch.randn(len(labels), dims[role]), "logits": torch.randn(len(labels), 10)}
        for size, (tap, width) in zip((8, 4, 2), channels[role].items()):
            made[tap] = torch.randn(len(labels), width, size, size)
        return {key: value.requires_grad_(role == "student") for key, value in made.items()}

    student, teacher = outputs("student"), outputs("teacher")
    context = TermContext(student_dim=dims["student"], teacher_dim=dims["teacher"],
                          student_tap_channels=channels["student"], teacher_tap_channels=channels["teacher"],
                          num_classes=10, episode=(n_way, k_shot, n_query))
    digest = hashlib.sha256()
    for name in sorted(LOSS_TERMS.names()):
        term = LOSS_TERMS.get(name).build(context, **TERM_OPTIONS.get(name, {}))
        loss = term(student, teacher, labels)
        grads = torch.autograd.grad(loss, [*student.values(), *term.parameters()], allow_unused=True)
        digest.update(name.encode())
        for value in (loss, *grads):
            if value is not None:
                digest.update(value.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    pinned = configure_determinism(threads=1)
    train, test = load_split(DIGITS, None, "train", train=True), load_split(DIGITS, None, "test", train=False)
    seed_everything(0)
    teacher = build_model("small_cnn", in_channels=1, embedding_dim=32, normalize=True, taps=("block2",))
    student = build_model("small_cnn", in_channels=1, embedding_dim=16, normalize=True, taps=("block2",))
    method = get_method("RKD-DA", task="metric")
    method = method.__class__(name="RKD-DA + triplet", task="metric", stages=(
        method.stages[0].__class__("train", {**method.stages[0].terms, "triplet": 1.0}),),
        term_options={"triplet": {"squared": False, "authors_numerics": True}})
    distiller = Distiller(student, teacher.eval(), method, TermContext.from_models(student, teacher))
    sampler = MPerClassSampler(train.targets, m=5, batch_size=25, seed=0)
    result = fit(distiller, train, sampler, TrainConfig(steps=STEPS, lr=1e-3), progress=False, num_workers=0)
    digest = hashlib.sha256()
    for value in student.state_dict().values():
        digest.update(value.detach().contiguous().numpy().tobytes())
    r1 = recall(student, test, ks=(1,), batch_size=200, device=torch.device("cpu"))["recall_at_1"]
    print(f"weights={digest.hexdigest()[:16]} losses={sorted(result.losses.items())} recall_at_1={r1!r} "
          f"terms={loss_terms_digest()} pinned={pinned} capability={torch.backends.cpu.get_cpu_capability()}")


if __name__ == "__main__":
    sys.exit(main())
