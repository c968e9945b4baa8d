"""Run one table's (or figure's) training runs: in this process, data-parallel on the GPUs
of one node (``torchrun``), spread over this machine's cores or GPUs, or over a Slurm
cluster; and see how far they are.

    # every run as its own process, 4 at a time on this machine (its cores, or its GPUs)
    python -m rkd.experiments.launch table1 -p scale paper -p data_root /data -p device cuda --executor local --jobs 4
    # every run as a Slurm job, one job array per wave of runs that depend on the last
    python -m rkd.experiments.launch table1 -p scale paper -p data_root /data -p device cuda \\
        --executor slurm --partition gpu --gpus-per-job 1 --time 720 --account myproject
    # what is done, running, waiting or failed (with the end of a failed job's log)
    python -m rkd.experiments.launch table1 -p scale paper -p data_root /data -p device cuda --status
    # one run after another, each data-parallel over the node's GPUs
    torchrun --nproc_per_node 8 -m rkd.experiments.launch table1 -p scale paper -p data_root /data -p device cuda

The ``-p NAME VALUE`` pairs are the notebook's parameters, written as for papermill
(``True``, ``None``, numbers and lists such as ``[0,1,2]`` are read as Python literals,
anything else as a string) and checked as the notebook checks them.

Runs meet in the model store (``cache_dir``, default the project's ``.cache/``; on a
cluster, a folder every node sees): a run already there is not submitted again, two
processes never train the same run (a lock per run), and a job the cluster kills is
requeued and resumes from its checkpoint. Render the page afterwards, in one process and
with the same parameters, and it trains nothing::

    papermill notebooks/table1_metric_learning.ipynb table1.ipynb -p scale paper -p data_root /data -p device cuda

Options of ``torchrun`` (the same in every process): ``--no-sync-batchnorm``,
``--rkd-angle-anchors local`` (each GPU computes the RKD-A triples whose vertex is one
of its own rows), ``--rows FILE`` (rank 0 writes the result rows as CSV),
``--timeout-minutes``.
"""
from __future__ import annotations

import rkd.pin  # noqa: F401, I001  (first: the CPU pin goes into the environment before torch loads)

import argparse
import ast
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit

__all__ = ["main", "parse_value", "JobWorker", "launch", "status"]


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python literal (``True``, ``None``, ``3``, ``1e-3``, ``[0, 1]``) or else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


class JobWorker(submitit.helpers.Checkpointable):
    """What a worker process does with a job key: prepare the experiment's call with the
    launch's parameters and obtain that job's result (trained into the model store, or
    found there). The experiment travels pickled (by reference for rkd's own).
    Checkpointable: a job the cluster stops is requeued with the same key and resumes from
    its checkpoint."""

    def __init__(self, experiment, params: dict[str, Any]):
        self.experiment, self.params = experiment, dict(params)

    def __call__(self, key: str) -> str:
        from ..runs import prepare

        call = prepare(self.experiment, **{**self.params, "progress": False})
        trained = call.session.result(call.job(key))
        return f"{trained.job.name}: {trained.metrics}"


def _prepared(experiment, params: dict[str, Any]):
    from ..runs import prepare

    return prepare(experiment, **params)


def _store_dir(params: dict[str, Any]) -> Path:
    from ..cache import default_cache_dir

    return Path(params.get("cache_dir") or default_cache_dir())


def launch(experiment, params: dict[str, Any], *, executor: str, jobs: int = 1, gpus: Sequence[int] = (),
           slurm=None) -> int:
    """Submit every job of ``experiment`` (with the notebook ``params``) that the stores do
    not hold yet; return how many were submitted (0: the table is done)."""
    from ..runs.executors import LaunchRecord, run_local, submit_slurm

    call = _prepared(experiment, params)
    done = lambda job: call.session.stored(job) is not None  # noqa: E731
    store = _store_dir(params)
    record = LaunchRecord.read(store / "launches" / f"{experiment.name}-{call.resolved.label}.json")
    work = JobWorker(experiment, params)
    folder = store / "launches" / "logs"
    if executor == "local":
        ran = run_local(work, call.jobs, done=done, folder=folder, parallel=jobs, gpus=gpus, record=record,
                        progress=params.get("progress", True))
        print(f"{experiment.title}: {ran} job(s) ran, {len(call.jobs) - ran} were done already.")
        return ran
    submitted = [job for job in call.jobs if not done(job)]
    arrays = submit_slurm(work, call.jobs, done=done, folder=folder, options=slurm, record=record,
                          name=f"rkd-{experiment.name}")
    print(f"{experiment.title}: {len(submitted)} job(s) submitted in {len(arrays)} wave(s) (Slurm job arrays "
          f"{', '.join(arrays) or '—'}); see their progress with --status.")
    return len(submitted)


def status(experiment, params: dict[str, Any]) -> dict[str, list[str]]:
    """Every job of ``experiment`` by state: done, running, waiting, failed (with its log's
    last lines) or interrupted (a process that ended without a result: launch again)."""
    from ..runs.executors import LaunchRecord, job_state

    call = _prepared(experiment, {**params, "progress": False})
    store = _store_dir(params)
    record = LaunchRecord.read(store / "launches" / f"{experiment.name}-{call.resolved.label}.json")
    found: dict[str, list[str]] = {"done": [], "running": [], "waiting": [], "failed": [], "interrupted": []}
    for job in call.jobs:
        if call.session.stored(job) is not None:
            found["done"].append(job.name)
        elif call.session.store.is_locked(job.key):
            found["running"].append(job.name)
        elif job.key not in record.jobs:
            found["waiting"].append(job.name)
        else:
            state, tail = job_state(record.jobs[job.key])
            if state == "failed":
                found["failed"].append(f"{job.name}\n{tail}")
            elif state == "running" and record.jobs[job.key].get("executor") == "slurm":
                found["running"].append(job.name)
            else:
                found["waiting" if state == "running" else "interrupted"].append(job.name)
    return found


def _parser() -> argparse.ArgumentParser:
    from . import names

    parser = argparse.ArgumentParser(
        prog="python -m rkd.experiments.launch",
        description="Run one experiment's training runs: in this process (or data-parallel under torchrun), as "
                    "processes of this machine, or as Slurm jobs; or show how far they are.",
        epilog="Example: python -m rkd.experiments.launch table1 -p scale paper -p data_root /data -p device cuda "
               "--executor slurm --partition gpu --gpus-per-job 1 --time 720")
    parser.add_argument("experiment", choices=names(), help="the table or figure")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a notebook parameter, as papermill's -p (repeat for each)")
    parser.add_argument("--executor", choices=("process", "local", "slurm"), default="process",
                        help="process: here, run after run (under torchrun: data-parallel); local: each run a "
                             "process, --jobs at a time; slurm: each run a Slurm job")
    parser.add_argument("--status", action="store_true", help="show what is done, running, waiting or failed")
    parser.add_argument("--jobs", type=int, default=1, help="local: processes at a time")
    parser.add_argument("--gpus", type=int, nargs="*", default=(), help="local: GPU indices to hand out, one a job")
    slurm = parser.add_argument_group("Slurm")
    slurm.add_argument("--partition")
    slurm.add_argument("--account")
    slurm.add_argument("--gpus-per-job", type=int, default=1)
    slurm.add_argument("--cpus-per-job", type=int, default=8)
    slurm.add_argument("--time", type=int, default=24 * 60, help="minutes a job may run (then it is requeued)")
    slurm.add_argument("--array-parallelism", type=int, default=64, help="jobs of one array running at once")
    torchrun = parser.add_argument_group("torchrun (--executor process)")
    torchrun.add_argument("--no-sync-batchnorm", action="store_true",
                          help="per-GPU BatchNorm statistics (default on CUDA: SyncBatchNorm, the global batch's)")
    torchrun.add_argument("--rkd-angle-anchors", choices=("global", "local"), default="global",
                          help="local: each GPU computes the RKD-A triples whose vertex is one of its rows")
    torchrun.add_argument("--rows", metavar="FILE", help="write the result rows to this CSV file (rank 0)")
    torchrun.add_argument("--timeout-minutes", type=float, default=None,
                          help="how long a process waits for the others (default: PyTorch's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module): run, launch or report the status of one
    experiment's runs, with ``argv`` (default ``sys.argv[1:]``); returns the exit status.
    A parameter given twice exits with a message; one the notebook would refuse (unknown,
    or of the wrong type) raises its :class:`~rkd.experiments.ParameterError`."""
    from ..runs.executors import SlurmOptions
    from . import get, notebook_parameters

    args = _parser().parse_args(argv)
    experiment = get(args.experiment)
    given: dict[str, Any] = {}
    for name, text in args.parameter:
        if name in given:
            raise SystemExit(f"parameter {name!r} is given twice")
        given[name] = parse_value(text)
    params = notebook_parameters(given, experiment)  # unknown names and wrong types fail as in the notebook
    if args.status:
        for state, names in status(experiment, params).items():
            print(f"{state}: {len(names)}")
            for name in names:
                print("  " + name.replace("\n", "\n    "))
        return 0
    if args.executor == "process":
        return _in_process(experiment, params, args)
    options = SlurmOptions(partition=args.partition, gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job,
                           time_minutes=args.time, account=args.account, array_parallelism=args.array_parallelism)
    launch(experiment, params, executor=args.executor, jobs=args.jobs, gpus=args.gpus, slurm=options)
    return 0


def _in_process(experiment, params: dict[str, Any], args) -> int:
    from ..runtime import atomic_write
    from ..train import distributed

    device = "cpu" if params.get("dry_run") else params.get("device", "cpu")  # a dry run trains on the CPU
    parallel = distributed.setup(device, timeout_minutes=args.timeout_minutes,
                                 sync_batchnorm=False if args.no_sync_batchnorm else None,
                                 angle_anchors=args.rkd_angle_anchors)
    main_process = parallel is None or parallel.is_main
    if not main_process:
        params["progress"] = False  # one progress bar, rank 0's
    try:
        # the other processes print what rank 0 prints; their warnings and errors still show
        quiet = contextlib.nullcontext() if main_process else contextlib.redirect_stdout(open(os.devnull, "w"))
        with quiet:
            results = experiment.run(**params)
        if main_process:
            processes = 1 if parallel is None else parallel.world_size
            print(f"{experiment.title}: {len(results.rows)} result rows from {processes} process(es); the "
                  f"trained models are in the cache, where the notebook reads them.")
            if args.rows:
                with atomic_write(args.rows, "w") as handle:
                    results.rows.to_csv(handle, index=False)
                print(f"rows written to {args.rows}")
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
