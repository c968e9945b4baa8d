"""Where the time of one distilled stand-in step goes: the whole ``fit`` step against its parts.

The step is Table 1's ci student as the runner trains it (``rkd.experiments.get("table1")``
at ``scale="ci"``, built by ``rkd.runs``): batches of 60 glyph images (12 classes x 5,
28 x 28), a ``small_cnn`` student with taps (embedding 8, L2-normalised), the recipe's
teacher precomputed by :class:`rkd.distill.PrecomputedTeacher`, RKD-DA (RKD-D + 2 x
RKD-A), fused Adam, one thread, the CPU pin, ``rkd.train.fit`` called as
:func:`rkd.runs.training.train_job` calls it: ``num_workers=0``, a checkpoint path (so
the CSV log is written), Recall@K on the test split at the recipe's cadence (every 300
steps) and after the last, NaN/inf checks every step, the progress bar on standard
error. Both networks start from their random initialisation (the runner starts from
pretrained and trained weights: the same arithmetic).

In one process, ``--repeats`` times in turn (the medians are printed), with CPU time
(the process's: what the step costs whatever else the machine runs) and wall time:

- **whole step**: ``fit`` for ``--steps`` steps (a fresh student, a fresh checkpoint
  folder) divided by the steps: set-up, evaluations and the last checkpoint included;
- **the parts**, timed where they run in a bare training loop of as many steps (the
  step's arithmetic in fit's order, a fresh student, fit's loader and optimiser, nothing
  else), per step: **student forward + backward** (the backward split from the loss
  terms' at the embedding); **loss terms** (RKD-D and RKD-A, weighted, forward + backward
  from the embedding, a leaf); **optimiser** (a fused Adam step and ``zero_grad``);
  **data** (a batch from fit's loader, ``rkd.train.loader.make_loader`` over a
  ``BatchStream``, in this process); **evaluation (amortised)** (Recall@K on the test
  split at fit's evaluation steps: with ``--steps 300``, one, the share a 3,000-step run pays);
- **everything else** = whole step - the parts, in each repeat (the median is printed,
  with the lowest and highest): what ``fit`` adds to the arithmetic (the teacher's
  lookup, the NaN/inf guard, the log, the progress bar, the scheduler, the checkpoint,
  the Python around them). The bare loop runs the student's backward in two calls (from
  the loss to the embedding, then on), a few tens of microseconds more than fit's one.

The machine may be loaded by other jobs: the figures to read are the shares, measured
in this one process, the whole step and the bare loop in turn.

    .venv/bin/python benchmarks/bench_stand_in_step.py --steps 300 --repeats 5

Last line: ``ratio everything else/step: X (CPU time), Y (wall time); step: ... ms CPU, ... ms wall``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import rkd.pin  # noqa: E402,F401  (before torch: the CPU pin, as the stand-in runs have it)
import torch  # noqa: E402

from _results import write_results  # noqa: E402
import rkd.experiments  # noqa: E402
from rkd.distill import Distiller, PrecomputedTeacher  # noqa: E402
from rkd.losses.terms import TermContext  # noqa: E402
from rkd.runs.jobs import DataCatalog, Job, list_jobs  # noqa: E402
from rkd.runs.plan import method_of, resolve_runs  # noqa: E402
from rkd.runs.policies import BATCH_POLICIES  # noqa: E402
from rkd.runs.training import build_model, measure  # noqa: E402
from rkd.runtime import configure_determinism  # noqa: E402
from rkd.train import fit  # noqa: E402
from rkd.train.config import OPTIMIZERS  # noqa: E402
from rkd.train.loader import make_loader  # noqa: E402
from rkd.train.stream import BatchStream  # noqa: E402

PARTS = ("student forward + backward", "loss terms", "optimiser", "data", "evaluation (amortised)")
CPU = torch.device("cpu")


@dataclass
class StandIn:
    """Table 1's ci RKD-DA student job and what its training needs, built as the runner builds them."""

    job: Job
    catalog: DataCatalog
    teacher: PrecomputedTeacher
    train_set: object
    test_set: object

    @classmethod
    def build(cls, dataset: str, dim: int, seed: int) -> StandIn:
        experiment = rkd.experiments.get("table1")
        resolved = resolve_runs(experiment, scale="ci", seeds=(seed,), methods=("RKD-DA",), embedding_dims=(dim,),
                                datasets=(dataset,))
        pinned = configure_determinism(resolved.preset.threads)
        catalog = DataCatalog(None)
        jobs = list_jobs(resolved, catalog, device=CPU, pinned=pinned)
        job = next(j for j in jobs if j.run.method == "RKD-DA" and dict(j.run.model_options)["normalize"])
        teacher_job = next(j for j in jobs if j.key == job.teacher)
        train_set = catalog.training_set(job.run)
        teacher = PrecomputedTeacher(build_model(teacher_job, catalog, None).eval(), train_set)
        _, test_set = next(catalog.test_sets(job.run))
        return cls(job, catalog, teacher, train_set, test_set)

    def distiller(self) -> Distiller:
        model = build_model(self.job, self.catalog, None)
        episode = BATCH_POLICIES.get(self.job.run.batches.kind).episode(self.job.run.batches)
        context = TermContext.from_models(model, self.teacher, num_classes=None, episode=episode)
        return Distiller(model, self.teacher, method_of(self.job.run), context)

    def sampler(self):
        batches = self.job.run.batches
        return BATCH_POLICIES.get(batches.kind).sampler(batches, self.train_set.targets, self.job.seed)

    def evaluate(self, model) -> dict:
        return measure(self.job, model, self.test_set, device=CPU, dry_run=False).metrics


class Stopwatch:
    """CPU (process) and wall seconds spent in named blocks, summed over their runs."""

    def __init__(self, names):
        self.cpu, self.wall = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)

    @contextmanager
    def timing(self, name: str):
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] += time.process_time() - cpu
            self.wall[name] += time.perf_counter() - wall

    def per(self, count: int) -> dict[str, tuple[float, float]]:
        return {name: (self.cpu[name] / count, self.wall[name] / count) for name in self.cpu}


def whole_step(stand_in: StandIn, steps: int, progress: bool) -> tuple[float, float]:
    """(CPU, wall) seconds per step of ``fit`` as the runner calls it (a fresh student)."""
    run = stand_in.job.run
    distiller = stand_in.distiller()
    model = distiller.student
    watch = Stopwatch(["fit"])
    with tempfile.TemporaryDirectory() as folder, watch.timing("fit"):
        fit(distiller, stand_in.train_set, stand_in.sampler(), replace(run.train, steps=steps), device=CPU,
            checkpoint_path=Path(folder) / "run.ckpt", evaluate=lambda: stand_in.evaluate(model),
            eval_every=run.evaluation.every, progress=progress, num_workers=0, desc=stand_in.job.name)
    return watch.per(steps)["fit"]


def parts(stand_in: StandIn, steps: int) -> dict[str, tuple[float, float]]:
    """(CPU, wall) seconds per step of each part, timed where it runs in a bare training loop:
    the step's arithmetic in fit's order (a fresh student, fit's loader and optimiser,
    the evaluations at fit's steps) and nothing else. The student's backward is split
    from the loss terms' at the embedding: the terms take it as a leaf, and the student's
    backward starts from the leaf's gradient."""
    run = stand_in.job.run
    distiller = stand_in.distiller().train()
    student, stage = distiller.student, distiller.method.stages[0]
    optimizer = OPTIMIZERS.get(run.train.optimizer)(distiller.trainable_parameters(), run.train)
    loader = make_loader(stand_in.train_set, BatchStream(stand_in.sampler(), 0, steps), data_seed=0, num_workers=0,
                         pin_memory=False)
    batches = iter(loader)
    every = run.evaluation.every
    watch = Stopwatch(PARTS)
    for done in range(1, steps + 1):
        with watch.timing(PARTS[3]):
            _step, _fingerprint, (images, labels) = next(batches)
        taught = stand_in.teacher(images)  # the lookup is fit's own work: not a part
        with watch.timing(PARTS[0]):
            outputs = student(images)
        embedding = outputs["embedding"].detach().requires_grad_(True)
        with watch.timing(PARTS[1]):
            losses = [weight * distiller.terms[name]({**outputs, "embedding": embedding}, taught, labels)
                      for name, weight in stage.terms.items()]
            sum(losses).backward()
        with watch.timing(PARTS[0]):
            outputs["embedding"].backward(embedding.grad)
        with watch.timing(PARTS[2]):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if done == steps or (every and done % every == 0):
            with watch.timing(PARTS[4]):
                stand_in.evaluate(student)
            student.train()
    return watch.per(steps)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="steps of each whole fit and of the bare loop")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dim", type=int, default=8, help="the student's embedding size (Table 1 ci: 8, 16)")
    parser.add_argument("--dataset", default="glyphs_cub", help="glyphs_cub or glyphs_cars")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="fit without its progress bar")
    parser.add_argument("--results-dir", default=None, help="where to write the JSON (default benchmarks/results)")
    args = parser.parse_args(argv)

    stand_in = StandIn.build(args.dataset, args.dim, args.seed)
    whole_step(stand_in, min(args.steps, 20), progress=False)  # warm-up: kernels, allocator, first evaluation
    parts(stand_in, min(args.steps, 20))
    wholes, measured = [], {part: [] for part in PARTS}
    for _ in range(args.repeats):
        wholes.append(whole_step(stand_in, args.steps, progress=not args.no_progress))
        for part, seconds in parts(stand_in, args.steps).items():
            measured[part].append(seconds)
    rows = table(wholes, measured)
    print(f"{stand_in.job.name}, {args.steps} steps per fit, {args.repeats} repeats, medians; shares of the CPU "
          f"time (torch threads: {torch.get_num_threads()})")
    print(f"{'':28s} {'CPU ms':>8s} {'share':>7s} {'(lowest, highest)':>17s} {'wall ms':>8s} {'share':>7s}")
    for row in rows:
        spread = f"({row['cpu_min_ms']:.2f}, {row['cpu_max_ms']:.2f})"
        print(f"{row['part']:28s} {row['cpu_ms']:8.2f} {row['cpu_share']:7.1%} {spread:>17s} {row['wall_ms']:8.2f} "
              f"{row['wall_share']:7.1%}")
    step, rest = rows[-1], rows[-2]
    summary = {"ratio everything else/step (CPU time)": rest["cpu_share"],
               "ratio everything else/step (wall time)": rest["wall_share"],
               "step CPU ms": step["cpu_ms"], "step wall ms": step["wall_ms"]}
    write_results("stand_in_step", "cpu", rows, summary, directory=args.results_dir)
    print(f"ratio everything else/step: {rest['cpu_share']:.3f} (CPU time), {rest['wall_share']:.3f} (wall time); "
          f"step: {step['cpu_ms']:.2f} ms CPU, {step['wall_ms']:.2f} ms wall")


def table(wholes: list[tuple[float, float]], measured: dict[str, list[tuple[float, float]]]) -> list[dict]:
    """One row per part, everything else and the whole step: medians over the repeats, in ms
    and as shares of the whole step's median. Everything else is the median of each
    repeat's whole step minus its parts (timed one after the other, so that the load of
    the machine at that moment cancels), with its lowest and highest values."""
    rows = []
    for clock in ("cpu", "wall"):
        index = 0 if clock == "cpu" else 1
        step = statistics.median(value[index] for value in wholes)
        rests = [whole[index] - sum(values[repeat][index] for values in measured.values())
                 for repeat, whole in enumerate(wholes)]
        series = {**{part: [value[index] for value in values] for part, values in measured.items()},
                  "everything else": rests, "whole step": [value[index] for value in wholes]}
        for position, (part, values) in enumerate(series.items()):
            if clock == "cpu":
                rows.append({"part": part})
            median = statistics.median(values)
            rows[position].update({f"{clock}_ms": median * 1e3, f"{clock}_share": median / step,
                                   f"{clock}_min_ms": min(values) * 1e3, f"{clock}_max_ms": max(values) * 1e3})
    return rows


if __name__ == "__main__":
    main()
