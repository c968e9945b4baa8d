"""One job trained and evaluated: :func:`train_job` builds the job's model (from its
initial weights), its :class:`~rkd.distill.Distiller` (with the teacher's outputs
precomputed when the images are fixed), its batch sampler, calls
:func:`rkd.train.fit` and measures the trained model on every test set of the run.
The result is a :class:`TrainedRun`.
"""
from __future__ import annotations

import datetime
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..distill import Distiller, PrecomputedTeacher
from ..losses.terms import TermContext
from ..runtime import seed_everything
from ..train import fit
from ..train.loader import draws_randomness
from .jobs import DataCatalog, Job
from .plan import method_of
from .policies import BATCH_POLICIES, EVALUATION_POLICIES
from .store import ModelStore

__all__ = ["TrainedRun", "TeacherOutputs", "build_model", "train_job", "measure", "loss_curve", "machine_name",
           "CURVE_POINTS"]


def machine_name(device: torch.device) -> str:
    """The processor (and GPU) the numbers were computed on, for the pages and the store."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (GPU), {cpu}"
    return cpu or "unknown CPU"


#: a stored loss curve holds at most this many points (each the mean of a stretch of steps)
CURVE_POINTS = 100


@dataclass
class TrainedRun:
    """What one job gives.

    Measured: ``metrics`` (test set as shown -> metrics), ``episodes`` (few-shot: test set
    -> way -> per-episode accuracies), ``history`` (the evaluations along training,
    ``{"step": s, **metrics}``), ``losses`` (``{"step": [...], term: [...]}``, each loss term
    averaged over stretches of steps, from the training log) and ``steps``. How it was
    made: ``wall_seconds``, ``machine``, ``date``. ``model_state``: the weights, kept when a
    later job or the page needs the model.
    """

    job: Job
    metrics: dict[str, dict[str, Any]]
    episodes: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    wall_seconds: float | None = None
    machine: str = ""
    date: str = ""
    model_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    _FIELDS: ClassVar[tuple[str, ...]] = ("metrics", "episodes", "history", "losses", "steps", "wall_seconds",
                                          "machine", "date")

    def payload(self) -> dict[str, Any]:
        """The model-store entry (plain containers and tensors only)."""
        payload = {name: getattr(self, name) for name in self._FIELDS}
        if self.model_state is not None:
            payload["model"] = self.model_state
        return payload

    def record(self, experiment: str) -> dict[str, Any]:
        """The job's line of the results store (:mod:`rkd.runs.results`)."""
        run = self.job.run
        return {"key": self.job.key, "experiment": experiment, "dataset": run.data.display, "run": run.name,
                "role": run.role, "seed": self.job.seed, "torch": torch.__version__,
                **{name: getattr(self, name) for name in self._FIELDS}}

    @classmethod
    def from_payload(cls, job: Job, payload: dict[str, Any]) -> TrainedRun:
        """A trained run from a model-store entry or a results-store record."""
        fields = {name: payload[name] for name in cls._FIELDS if payload.get(name) is not None}
        return cls(job, **fields, model_state=payload.get("model"))


def build_model(job: Job, catalog: DataCatalog, start_from: Path | nn.Module | None) -> nn.Module:
    """The job's network, seeded (every model of a seed starts from the same draw, whatever
    ran before) and started from ``start_from``: a pretrained trunk's weights file (read
    like a local ImageNet file), an earlier model, or nothing (random initialisation)."""
    run = job.run
    seed_everything(job.seed)
    options = dict(run.model_options)
    if run.classifies:
        options["num_classes"] = catalog.training_set(run).num_classes
    if isinstance(start_from, Path):
        return run.network.build(**options, weights_path=str(start_from))
    model = run.network.build(**options)
    if start_from is not None:
        model.load_state_dict(start_from.state_dict())
    return model


def measure(job: Job, model: nn.Module, test_set, *, device: torch.device, dry_run: bool,
            teacher: nn.Module | None = None):
    """The job's evaluation of ``model`` on ``test_set`` (a :class:`~rkd.runs.policies.Measured`);
    ``teacher``: the job's teacher, for metrics that compare the two."""
    evaluation = job.run.evaluation
    return EVALUATION_POLICIES.get(evaluation.kind).measure(evaluation, model, test_set, seed=job.seed,
                                                            device=device, dry_run=dry_run, teacher=teacher)


class TeacherOutputs:
    """One teacher's precomputed outputs at a time (see :class:`rkd.distill.PrecomputedTeacher`),
    shared by the students of that teacher, which train one after another."""

    def __init__(self):
        self._held: tuple[str, Any, PrecomputedTeacher] | None = None

    def get(self, teacher_key: str, teacher: nn.Module, train_set) -> PrecomputedTeacher:
        held = self._held
        if held is None or held[0] != teacher_key or held[1] is not train_set:
            held = self._held = (teacher_key, train_set, PrecomputedTeacher(teacher, train_set))
        return held[2]


def loss_curve(log: Path | None, points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """Each loss term of the training log at ``log`` (and their total) averaged over at most
    ``points`` equal stretches of steps: ``{"step": [last step of each stretch], term: [...]}``.
    The means are exactly rounded sums (``math.fsum``), the same bits on every machine."""
    if log is None or not log.is_file():
        return {}
    from ..train.log import read_training_log

    frame = read_training_log(log)
    by_term: dict[str, dict[int, float]] = {}
    for step, kind, name, value in zip(frame["step"], frame["kind"], frame["name"], frame["value"]):
        if kind == "loss":
            by_term.setdefault(str(name), {})[int(step)] = float(value)
    if not by_term:
        return {}
    steps = sorted(next(iter(by_term.values())))
    stretch = -(-len(steps) // points)  # ceil: at most ``points`` stretches
    parts = [steps[i:i + stretch] for i in range(0, len(steps), stretch)]
    curve: dict[str, list[float]] = {"step": [part[-1] for part in parts]}
    for name, values in by_term.items():
        curve[name] = [math.fsum(values[s] for s in part) / len(part) for part in parts]
    return curve


def train_job(job: Job, *, catalog: DataCatalog, store: ModelStore, device: torch.device,
              teacher: nn.Module | None, start_from: Path | nn.Module | None, keep_model: bool,
              teacher_outputs: TeacherOutputs | None = None, progress: bool = True,
              num_workers: int | None = None, dry_run: bool = False) -> TrainedRun:
    """Train ``job`` (resuming its checkpoint, if any) and measure the trained model."""
    run = job.run
    started = time.perf_counter()
    model = build_model(job, catalog, start_from)
    history: list[dict[str, Any]] = []
    already: dict[str, Any] = {}
    curve: dict[str, list[float]] = {}
    if run.trains:
        train_set = catalog.training_set(run)
        if teacher is not None and not draws_randomness(train_set):
            teacher = (teacher_outputs or TeacherOutputs()).get(job.teacher, teacher, train_set)
        batches = BATCH_POLICIES.get(run.batches.kind)
        context = TermContext.from_models(model, teacher, num_classes=train_set.num_classes if run.classifies
                                          else None, episode=batches.episode(run.batches))
        distiller = Distiller(model, teacher, method_of(run), context)
        _, own_test_set = next(catalog.test_sets(run))
        evaluate = ((lambda: measure(job, model, own_test_set, device=device, dry_run=dry_run).metrics)
                    if run.evaluation.every else None)
        checkpoint = store.checkpoint_path(job.key)
        result = fit(distiller, train_set, batches.sampler(run.batches, train_set.targets, job.seed), run.train,
                     device=device, checkpoint_path=checkpoint, evaluate=evaluate,
                     eval_every=run.evaluation.every, progress=progress, num_workers=num_workers, desc=job.name)
        history = [dict(h) for h in result.history]
        if evaluate is not None:  # fit measured the final model on its own test set already
            already[run.data.display] = result.metrics
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)  # the finished model lives in the store now
            curve = loss_curve(store.log_path(job.key))
    model.eval()
    plain_teacher = getattr(teacher, "teacher", teacher)  # the network itself, not its precomputed outputs
    trained = TrainedRun(job, {}, history=history, losses=curve, steps=run.train.steps if run.trains else 0,
                         machine=machine_name(device), date=datetime.date.today().isoformat())
    for domain, test_set in catalog.test_sets(run):
        found = already.get(domain.display)
        if found is None or EVALUATION_POLICIES.get(run.evaluation.kind).per_episode or run.evaluation.head_to_head:
            measured = measure(job, model, test_set, device=device, dry_run=dry_run, teacher=plain_teacher)
            found = measured.metrics
            if measured.episodes:
                trained.episodes[domain.display] = measured.episodes
        trained.metrics[domain.display] = dict(found)
    if keep_model:
        trained.model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    trained.wall_seconds = round(time.perf_counter() - started, 1)
    return trained
