"""The pages' numbers kept as data (``results/``, :mod:`rkd.runs.results`): made, checked
and re-verified.

    python -m rkd.experiments.results refresh [EXPERIMENT ...] [--jobs N] [--scale S]   # make results
    python -m rkd.experiments.results verify --sample 12 --budget-minutes 20 --seed COMMIT  # make test
    python -m rkd.experiments.results verify table1 --key 3f2a9c            # one run, as a page's box says
    python -m rkd.experiments.results check [--scale S] [--written]          # stale or missing records

``refresh`` retrains every job of every page at ``scale="ci"`` (each page's default
parameters, as its notebook runs them; ``--scale converged``: the stand-in regime whose
runs reach a plateau, stored in ``results/converged/``) on this machine's cores, one
process per job, and rewrites the store. It is resumable, on this machine and on another:
finished jobs wait in ``.cache/results-run/``, and their records in the store's
``unfinished/`` folder (commit it to carry a page that takes longer than one sitting over
to a fresh clone) until the page's file is written. ``verify`` retrains a sample of whole chains (pretrained
trunk, teacher, student, in a model store of their own, every page's in one pool of
processes) chosen afresh from ``--seed`` (within ``--budget-minutes`` of the store's
recorded training time, so that an unlucky draw cannot blow ``make test``'s time) and
fails unless every retrained number equals the stored one bit for bit; it also fails on
a stored record that no planned job produces (stale) and on a planned job missing from
the store. ``check`` does the last two without training.
"""
from __future__ import annotations

import rkd.pin  # noqa: F401, I001  (first: the CPU pin goes into the environment before torch loads)

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..cache import default_cache_dir
from ..runs import Call, prepare
from ..runs.executors import run_local
from ..runs.jobs import Job
from ..runs.store import ModelStore
from ..runtime import atomic_write
from ..runs.results import STORED_SCALES, ResultStore, default_results_dir, same_measurements, scale_dir
from ..runs.training import TrainedRun
from . import get, stored
from .base import Experiment
from .recipes import CONVERGED
from .launch import JobWorker

__all__ = ["refresh", "verify", "check", "chain", "written_pages", "main"]

#: the scale whose records ``make test`` verifies (``results/``; another scale's lie in ``results/<scale>/``)
SCALE = "ci"
#: the folder of a store (``results/unfinished/``, ``results/converged/unfinished/``) where a
#: refresh keeps each job's record as it ends, until the page's file is written
UNFINISHED = "unfinished"


def _pages(experiments: Mapping[str, Experiment] | None, scale: str = SCALE) -> dict[str, Experiment]:
    """The experiments to work on: every one with a preset at ``scale`` (default; the
    tuning has only ``ci``'s), or the ones given, by name."""
    if experiments is not None:
        return dict(experiments)
    return {name: get(name) for name in stored() if _has_scale(get(name), scale)}


def _has_scale(experiment: Experiment, scale: str) -> bool:
    try:
        experiment.preset(scale)
    except ValueError:
        return False
    return True


def _call(experiment: Experiment, cache_dir: Path, results_dir: Path | str | None, scale: str = SCALE) -> Call:
    return prepare(experiment, scale=scale, cache_dir=str(cache_dir), results_dir=results_dir, progress=False)


def _store_dir(results_dir: Path | None, scale: str) -> Path:
    """The folder of ``scale``'s records: ``results_dir`` as given, else the default store's
    (``results/`` of the working directory when there is none)."""
    return Path(results_dir or default_results_dir(scale) or scale_dir(Path.cwd() / "results", scale))


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when inside it (as a message shows it)."""
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def _trained(call: Call, job: Job) -> TrainedRun:
    payload = call.session.store.get(job.key, job.config)
    if payload is None:
        raise RuntimeError(f"{job.name} is not in the model store {call.session.store.directory}")
    return TrainedRun.from_payload(job, payload)


def refresh(experiments: Mapping[str, Experiment] | None = None, *, jobs: int | None = None,
            work_dir: Path | None = None, results_dir: Path | None = None, progress: bool = True,
            scale: str = SCALE) -> dict[str, Path]:
    """Retrain every job of ``experiments`` (name -> experiment; default: every page) at
    ``scale`` and rewrite their files of the store.

    Each job's record is kept in ``<store>/unfinished/<page>.jsonl`` as soon as the job
    ends, so that a refresh stopped part-way resumes on any machine (a store too big for
    one sitting fills over several, from a fresh clone each time): it trains only the jobs
    without a record there, and the models they need (whose records it then holds against
    the kept ones: the machines must agree bit for bit)."""
    results_dir = _store_dir(results_dir, scale)
    work_dir = Path(work_dir or default_cache_dir() / "results-run")
    jobs = jobs or len(os.sched_getaffinity(0))
    store, unfinished = ResultStore(results_dir), ResultStore(results_dir / UNFINISHED)
    written = {}
    for name, experiment in _pages(experiments, scale).items():
        call = _call(experiment, work_dir, "", scale)  # "": no results store to read, everything trains
        training = [job for job in call.jobs if job.run.trains]
        planned = {job.key for job in training}
        kept = {key: record for key, record in unfinished.records(name).items() if key in planned}
        to_train = {job.key for job in _members(call, [job for job in training if job.key not in kept])}
        keep = _keeper(name, call, unfinished, kept)
        for job in training:  # trained by an earlier refresh on this machine: kept before anything else runs
            if job.key not in kept and call.session.store.get(job.key, job.config) is not None:
                keep(job)

        def done(job: Job, call: Call = call, to_train: set[str] = to_train) -> bool:
            return job.key not in to_train or call.session.store.get(job.key, job.config) is not None

        print(f"{call.source.title}: {len(training)} training jobs"
              + (f", {len(kept)} kept by an unfinished refresh ({_shown(unfinished.path(name))})" if kept else "")
              + f"; {sum(not done(job) for job in training)} to train, {jobs} at a time", flush=True)
        run_local(JobWorker(call.source, {"scale": scale, "cache_dir": str(work_dir), "results_dir": ""}), training,
                  done=done, finished=keep, folder=work_dir / "logs", parallel=jobs, progress=progress)
        written[name] = store.write(name, (unfinished.get(name, job.key) for job in training))
        unfinished.remove(name)
    return written


def _keeper(name: str, call: Call, unfinished: ResultStore, kept: Mapping[str, dict]) -> Callable[[Job], None]:
    """What :func:`refresh` does with each job that ends: its record into ``unfinished``, or,
    for a job retrained only because another needs its model, its record held against the
    one ``kept`` (a mismatch stops the refresh: two machines that disagree must not fill one
    page)."""
    def keep(job: Job) -> None:
        record = _trained(call, job).record(name)
        if job.key not in kept:
            unfinished.add(name, record)
        elif differing := same_measurements(kept[job.key], record):
            raise RuntimeError(f"{name}: {job.name} retrained here differs in {differing} from the record that an "
                               f"unfinished refresh kept in {unfinished.path(name)} (made on "
                               f"{kept[job.key].get('machine')}); this machine does not reproduce that one bit for "
                               f"bit: delete that file and refresh the page on one machine")
    return keep


def chain(call: Call, job: Job) -> list[Job]:
    """``job`` and every job it needs, transitively, in training order."""
    needed, stack = set(), [job.key]
    while stack:
        key = stack.pop()
        if key not in needed:
            needed.add(key)
            stack.extend(call.job(key).needs)
    return [j for j in call.jobs if j.key in needed]


def check(experiments: Mapping[str, Experiment] | None = None, results_dir: Path | None = None, *,
          scale: str = SCALE, written: bool = False) -> list[str]:
    """Problems of the store of ``scale`` against the planned jobs: stale records (no
    planned job has their key) and planned jobs without a record; with ``written``, of the
    pages whose file exists only."""
    results_dir = _store_dir(results_dir, scale)
    store, problems = ResultStore(results_dir), []
    pages = _pages(experiments, scale)
    if written:
        pages = {name: pages[name] for name in written_pages(pages, results_dir)}
    for name, experiment in pages.items():
        planned = _planned_runs(experiment, scale)
        stored, remedy = store.records(name), "make results" + ("" if scale == SCALE else f" SCALE={scale}")
        problems += [f"{name}: stale record {r['dataset']}: {r['run']} (seed {r['seed']}), key {k[:12]}: no planned "
                     f"run has it any more; run `{remedy}`" for k, r in stored.items() if k not in planned]
        problems += [f"{name}: {job.name} is planned but has no record; run `{remedy}`"
                     for k, job in planned.items() if k not in stored]
    return problems


def _planned_runs(experiment: Experiment, scale: str = SCALE) -> dict[str, Job]:
    """Key -> job, for every training job ``experiment`` plans at ``scale`` (nothing trains)."""
    with tempfile.TemporaryDirectory(prefix="rkd-check-") as work_dir:  # an empty model store
        return {job.key: job for job in _call(experiment, Path(work_dir), "", scale).jobs if job.run.trains}


def _part_way(name: str, experiment: Experiment, scale: str, unfinished: ResultStore) -> str | None:
    """A line on what an unfinished refresh kept of page ``name``, or ``None`` when it kept nothing."""
    if not (kept := unfinished.records(name)):
        return None
    planned = _planned_runs(experiment, scale)
    stale = sum(key not in planned for key in kept)
    return (f"{scale}: {name} part-way, {len(kept) - stale} of {len(planned)} planned run(s) kept in "
            f"{_shown(unfinished.path(name))} (`make results SCALE={scale}` resumes it)"
            + (f"; {stale} more kept record(s) no planned run makes any more (the refresh ignores them)"
               if stale else ""))


def written_pages(experiments: Mapping[str, Experiment], results_dir: Path) -> list[str]:
    """The names of ``experiments`` whose file is written in ``results_dir``."""
    return [name for name in experiments if ResultStore(results_dir).path(name).is_file()]


def _sample(ends: dict[str, list[Job]], pages: list[str], sample: int, rng: random.Random,
            recorded: Callable[[str, Job], dict[str, float]], budget: float | None = None) -> list[tuple[str, Job]]:
    """``sample`` chain ends, one from each page in turn, so that the sample spreads over the pages.

    ``recorded(page, end)``: the recorded training seconds of each job of the chain, by key.
    With ``budget`` (seconds), each draw is among the page's chains whose jobs not yet in the
    sample (chains share trunks and teachers) keep the sample's total within it, so that an
    unlucky draw of long chains cannot blow ``make test``'s time; a page with none that fits
    waits for the next round, and when nothing fits anywhere the cheapest chain left is
    taken, so that the sample still has ``sample`` chains. Without it, any chain."""
    chosen: list[tuple[str, Job]] = []
    taken: set[str] = set()
    spent = 0.0

    def extra(name: str, end: Job) -> float:
        return sum(seconds for key, seconds in recorded(name, end).items() if key not in taken)

    def take(name: str, end: Job) -> None:
        nonlocal spent
        spent += extra(name, end)
        taken.update(recorded(name, end))
        ends[name].remove(end)
        chosen.append((name, end))

    while len(chosen) < sample and any(ends[name] for name in pages):
        drew = False
        for name in pages:
            fits = [end for end in ends[name] if budget is None or spent + extra(name, end) <= budget]
            if fits and len(chosen) < sample:
                take(name, fits[rng.randrange(len(fits))])
                drew = True
        if not drew:  # nothing fits the budget any more: the cheapest chain left
            left = [(name, end) for name in pages for end in ends[name]]
            take(*min(left, key=lambda page_and_end: extra(*page_and_end)))
    return chosen


def _recorded(calls: Mapping[str, Call], store: ResultStore) -> Callable[[str, Job], dict[str, float]]:
    """``(page, end) ->`` the recorded training seconds of each trained job of the chain that
    ends in ``end``, by key (0 for a job without a record: :func:`check` reports it)."""
    known: dict[tuple[str, str], dict[str, float]] = {}

    def recorded(name: str, end: Job) -> dict[str, float]:
        if (name, end.key) not in known:
            known[name, end.key] = {job.key: (store.get(name, job.key) or {}).get("wall_seconds", 0.0)
                                    for job in chain(calls[name], end) if job.run.trains}
        return known[name, end.key]
    return recorded


def _named(calls: Mapping[str, Call], keys: Sequence[str]) -> list[tuple[str, Job]]:
    """The trained jobs whose key starts with one of ``keys`` (as a page's box prints them)."""
    chosen = [(name, job) for name, call in calls.items() for job in call.jobs
              if job.run.trains and any(job.key.startswith(key) for key in keys)]
    unknown = [key for key in keys if not any(job.key.startswith(key) for _, job in chosen)]
    if unknown:
        raise SystemExit(f"no planned training run has a key starting with {', '.join(unknown)}; the keys are the "
                         f"'key' fields of results/<page>.jsonl")
    return chosen


def verify(sample: int = 12, seed: str = "0", *, experiments: Mapping[str, Experiment] | None = None,
           keys: Sequence[str] = (), jobs: int | None = None, results_dir: Path | None = None,
           progress: bool = True, scale: str = SCALE, into_cache: Path | None = None,
           budget_minutes: float | None = None) -> list[str]:
    """Retrain ``sample`` whole chains (students of every page in turn, chosen by ``seed``,
    within ``budget_minutes`` of recorded training time: see :func:`_sample`), or the chains
    of the runs whose key starts with one of ``keys``, at ``scale``, and compare every
    retrained job with its record; return the problems (empty: all equal).

    The chains train in a model store of their own, so that nothing already trained is
    read instead; with ``into_cache`` (a model store's folder, e.g. ``.cache``), the jobs
    that matched their records are then copied there, so that the notebooks executed next
    read them instead of training them again (the pretrained trunks above all)."""
    results_dir = _store_dir(results_dir, scale)
    experiments = _pages(experiments, scale)
    problems = check(experiments, results_dir, scale=scale)
    store = ResultStore(results_dir)
    rng = random.Random(int(hashlib.sha256(seed.encode()).hexdigest(), 16))
    work_dir = Path(tempfile.mkdtemp(prefix="rkd-verify-"))
    cache = ModelStore(into_cache) if into_cache is not None else None
    try:
        calls = {name: _call(experiment, work_dir, "", scale) for name, experiment in experiments.items()}
        ends = {name: [j for j in call.jobs if j.run.trains and not any(j.key in o.needs for o in call.jobs)]
                for name, call in calls.items()}
        pages = [name for name in experiments if ends[name]]
        budget = None if budget_minutes is None else 60.0 * budget_minutes
        chosen = (_named(calls, keys) if keys else _sample(ends, pages, sample, rng, _recorded(calls, store), budget))
        members = {name: _members(calls[name], [end for n, end in chosen if n == name]) for name in pages}
        members = {name: page_jobs for name, page_jobs in members.items() if page_jobs}
        owner: dict[str, str] = {}  # job key -> the page that trains it (pages share pretrained trunks)
        for name, page_jobs in members.items():
            print(f"{calls[name].source.title}: retraining {len(page_jobs)} jobs of "
                  f"{sum(n == name for n, _ in chosen)} chain(s)", flush=True)
            owner.update({job.key: name for job in page_jobs if job.key not in owner})
        # one pool for every page, so that a page's lone teacher -> student chain does not leave cores idle
        params = {"scale": scale, "cache_dir": str(work_dir), "results_dir": ""}
        workers = {name: JobWorker(calls[name].source, params) for name in members}
        run_local(_PageWorkers({key: workers[name] for key, name in owner.items()}),
                  [job for name, page_jobs in members.items() for job in page_jobs if owner[job.key] == name],
                  done=lambda job: calls[owner[job.key]].session.store.get(job.key, job.config) is not None,
                  folder=work_dir / "logs", parallel=jobs or len(os.sched_getaffinity(0)), progress=progress)
        for name, page_jobs in members.items():
            for job in page_jobs:
                record = store.get(name, job.key)
                if record is None:
                    continue  # reported by check()
                differing = same_measurements(record, _trained(calls[name], job).record(name))
                if differing:
                    problems.append(f"{name}: {job.name} retrained differs from its record in {differing}")
                elif cache is not None:
                    _hand_over(calls[name].session.store, job, cache)
        return problems
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _members(call: Call, ends: Sequence[Job]) -> list[Job]:
    """The trained jobs of the chains that end in ``ends``, in training order."""
    keys = {job.key for end in ends for job in chain(call, end)}
    return [job for job in call.jobs if job.key in keys and job.run.trains]


class _PageWorkers:
    """One worker for the jobs of several pages (:func:`run_local` runs one callable): each
    job key to its page's :class:`JobWorker`."""

    def __init__(self, workers: Mapping[str, JobWorker]):
        self.workers = dict(workers)

    def __call__(self, key: str) -> str:
        return self.workers[key](key)


def _hand_over(source: ModelStore, job: Job, target: ModelStore) -> None:
    """``job``'s entry (and its trunk's weights file, if it has one) copied from ``source``
    to ``target``, unless ``target`` has it."""
    if target.get(job.key, job.config) is None:
        target.put(job.key, job.config, source.get(job.key, job.config))
    weights, kept = source.weights_path(job.key), target.weights_path(job.key)
    if weights.is_file() and not kept.exists():
        with atomic_write(kept, "wb") as handle:
            handle.write(weights.read_bytes())


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``refresh``, ``verify`` or ``check`` the results store, with
    ``argv`` (default ``sys.argv[1:]``); prints what it finds and returns the exit status,
    1 when a problem was found, else 0."""
    parser = argparse.ArgumentParser(prog="python -m rkd.experiments.results", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    refreshing = commands.add_parser("refresh", help="retrain every job and rewrite the store")
    refreshing.add_argument("experiments", nargs="*", help="the pages to refresh (default: all)")
    refreshing.add_argument("--jobs", type=int, default=None, help="processes at a time (default: every core)")
    refreshing.add_argument("--scale", default=SCALE, choices=STORED_SCALES,
                            help=f"{SCALE} (default; what make test verifies) or {CONVERGED} (the runs trained to "
                                 f"their plateau: hours on a CPU), written to results/{CONVERGED}/")
    verifying = commands.add_parser("verify", help="retrain a sample of chains and compare bit for bit")
    verifying.add_argument("--sample", type=int, default=12)
    verifying.add_argument("--seed", default="0", help="chooses the sample (make test passes the commit hash)")
    verifying.add_argument("experiments", nargs="*", help="the pages to sample from (default: all)")
    verifying.add_argument("--key", action="append", default=[],
                           help="retrain this run's chain instead of a sample (a key or its first characters, "
                                "as a page's box prints it; repeatable)")
    verifying.add_argument("--jobs", type=int, default=None)
    verifying.add_argument("--budget-minutes", type=float, default=None,
                           help="draw the sample so that its chains' recorded training time (as the store has it, "
                                "core-minutes) stays within this (default: no bound)")
    verifying.add_argument("--into-cache", action="store_true",
                           help="copy the verified models into the model store (.cache), for the notebooks next")
    checking = commands.add_parser("check", help="stale or missing records, without training")
    checking.add_argument("--written", action="store_true",
                          help="only the pages whose file is written (a store being filled page by page)")
    for command in (verifying, checking):
        command.add_argument("--scale", default=SCALE, choices=STORED_SCALES,
                             help=f"the records of this scale (default {SCALE}; {CONVERGED}: results/{CONVERGED}/)")
    args = parser.parse_args(argv)
    if args.command == "refresh":
        chosen = {name: get(name) for name in args.experiments} if args.experiments else None
        for name, path in refresh(chosen, jobs=args.jobs, scale=args.scale).items():
            print(f"{name}: wrote {path}")
        return 0
    if args.command == "check":
        problems = check(scale=args.scale, written=args.written)
        if args.written:
            every, store_dir = _pages(None, args.scale), _store_dir(None, args.scale)
            pages = written_pages(every, store_dir)
            print(f"{args.scale}: {len(pages)} page(s) written ({', '.join(pages) or 'none yet'})")
            unfinished = ResultStore(store_dir / UNFINISHED)
            for name, experiment in every.items():
                if line := _part_way(name, experiment, args.scale, unfinished):
                    print(line)
    else:
        chosen = {name: get(name) for name in args.experiments} if args.experiments else None
        problems = verify(args.sample, args.seed, experiments=chosen, keys=args.key, jobs=args.jobs, scale=args.scale,
                          into_cache=default_cache_dir() if args.into_cache else None,
                          budget_minutes=args.budget_minutes)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "the store matches the plan" +
          ("" if args.command == "check" else " and every retrained number its record, bit for bit"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
